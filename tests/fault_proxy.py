"""A hostile network between tills and the central: an HTTP proxy on 127.0.0.1 that drops,
duplicates, delays, replays stale requests, resets connections and answers 5xx.

Faults are drawn from a seeded generator per request. "drop_response" is the nasty one: the
central has applied the batch, the till never hears so. "stale" sends an earlier request
again later, so an old batch overtakes newer ones. `down` makes the central unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

FAULTS = ("drop_request", "drop_response", "duplicate", "delay", "stale", "reset", "error_5xx")
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class FaultPlan:
    rate: float = 0.3  # share of requests that meet a fault
    faults: tuple[str, ...] = FAULTS
    max_delay_s: float = 0.3


@dataclass
class FaultProxy:
    upstream: str
    plan: FaultPlan = field(default_factory=FaultPlan)
    seed: int = 1
    down: bool = False
    # Seconds: answer every request 503 with this Retry-After, as an overloaded central does.
    busy_retry_after: int | None = None
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._turn = -1
        self.requests = 0
        self._seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        # Cancelled one by one: a gather() would stop at the first exception.
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    def _pick(self) -> str | None:
        self.requests += 1
        if self._rng.random() >= self.plan.rate:
            return None
        # Kinds in turn, not at random: every kind is met once a handful of faults happened,
        # however few requests a fast run makes.
        self._turn += 1
        return self.plan.faults[self._turn % len(self.plan.faults)]

    async def _forward(self, method: str, path_qs: str, headers: dict[str, str],
                       body: bytes) -> tuple[int, bytes, str]:
        assert self._session is not None
        async with self._session.request(method, self.upstream + path_qs, headers=headers,
                                         data=body or None) as resp:
            return resp.status, await resp.read(), resp.content_type

    def _later(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stale(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._seen and not self.down:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                await self._forward(*self._rng.choice(self._seen))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        call = (request.method, request.path_qs, headers, body)
        if self.busy_retry_after is not None and not self.down:
            self.counts["busy"] += 1
            return web.json_response({"error": "busy (injected)"}, status=503,
                                     headers={"Retry-After": str(self.busy_retry_after)})
        fault = "down" if self.down else self._pick()
        if fault:
            self.counts[fault] += 1
        transport = request.transport
        if fault in ("down", "drop_request", "reset"):
            if transport:
                transport.abort() if fault == "reset" else transport.close()
            return web.Response(status=502)  # never reaches the till: the socket is gone
        if fault == "error_5xx":
            return web.json_response({"error": "bad gateway (injected)"}, status=503)
        if fault == "delay":
            await asyncio.sleep(self._rng.uniform(0, self.plan.max_delay_s))
        if request.method == "POST":
            self._seen = [*self._seen, call][-50:]
        try:
            status, data, ctype = await self._forward(*call)
            if fault == "duplicate":
                status, data, ctype = await self._forward(*call)
        except (TimeoutError, aiohttp.ClientError):
            return web.json_response({"error": "central unreachable (proxy)"}, status=502)
        if fault == "stale":
            self._later(self._stale(self._rng.uniform(0, 2 * self.plan.max_delay_s)))
        if fault == "drop_response":
            if transport:
                transport.close()  # applied at the central; the answer is lost
            return web.Response(status=502)
        return web.Response(status=status, body=data, content_type=ctype)
