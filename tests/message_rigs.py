"""What the message tests share: a real SMTP server (aiosmtpd) and a fake HTTP gateway
that can be made to fail, both on port 0 in the test's own event loop."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiohttp import web
from aiosmtpd.smtp import SMTP

from central import customers, db

CARDS = iter(f"29900000{n:05d}" for n in range(10000))


@dataclass
class SmtpServer:
    """aiosmtpd's SMTP protocol on a socket of our own: every message it accepted."""

    mails: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd calls it by this name
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.mails.append(message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 Message accepted for delivery"

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self), "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class FakeGateway:
    """An SMS/push provider's HTTP API: takes {"to", "text", "key"}; `down` answers 503,
    `delay` holds each answer (so that two senders overlap)."""

    received: list[dict] = field(default_factory=list)
    down: bool = False
    refuse: set[str] = field(default_factory=set)  # addresses it refuses (400)
    delay: float = 0.0
    refused_while_down: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/send", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.delay:
            await asyncio.sleep(self.delay)  # the provider's own latency, not a test wait
        if self.down:
            self.refused_while_down += 1
            return web.json_response({"error": "maintenance"}, status=503)
        if body["to"] in self.refuse:
            return web.json_response({"error": "bad number"}, status=400)
        assert request.headers["Idempotency-Key"] == body["key"]
        self.received.append(body)
        return web.json_response({"id": f"gw-{len(self.received)}"})

    def keys(self) -> Counter:
        return Counter(b["key"] for b in self.received)


def new_customer(conn: db.Connection, keys, now, **kw) -> str:
    return customers.create(conn, keys, now, card_number=next(CARDS), **kw)["id"]


def another_connection(central, tmp_path: Path, database: Path | str) -> db.Connection:
    """A second connection to the central's database, as another process would open."""
    return db.connect(database if isinstance(database, str)
                      else tmp_path / "central" / "central.db")
