"""Running servers for tests that drive them over real HTTP from plain synchronous code
(property-based fuzzing): an aiohttp app on 127.0.0.1, port 0, in a thread of its own with
its own event loop, and a small blocking JSON/bytes client."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        try:
            return str(self.json().get("error", ""))
        except (ValueError, AttributeError):
            return ""


class ServerThread:
    """An app built by `build` (called on the server's own loop) serving until stop()."""

    def __init__(self, build: Callable[[], Coroutine[Any, Any, web.Application]]) -> None:
        self._build = build
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.port = 0

    def start(self) -> ServerThread:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.app = await self._build()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run `coro` on the server's loop (where its database connection lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Answer(resp.status, resp.read())
        finally:
            conn.close()

    def send_json(self, method: str, path: str, value: Any,
                  headers: dict[str, str] | None = None) -> Answer:
        raw = json.dumps(value).encode()  # lone surrogates travel as \\udXXX escapes
        return self.request(method, path, raw,
                            {"Content-Type": "application/json", **(headers or {})})
