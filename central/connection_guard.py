"""Slow and idle clients cannot hold the central: deadlines below aiohttp, per connection.

aiohttp waits for request headers and bodies as long as the client likes, so a thousand
clients that open a request and trickle a byte every few seconds hold a thousand sockets
(and file descriptors) for ever. `Guard` wraps aiohttp's protocol factory and watches the
bytes of each connection before aiohttp parses them:

- the request head (request line and headers) must be complete within `header_timeout`
  of its first byte (or of the connection, for a client that sends nothing);
- a body must arrive at `min_body_rate` bytes a second on average, after a grace period:
  a store on a slow mobile link sends kilobytes a second and passes, a client trickling a
  byte every few seconds is cut off;
- at most `max_connections` are open at once; one more is closed as it arrives.

Once a request has arrived whole nothing is timed here: waiting for the answer (a batch
queued behind others) is the central's time, not the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

_END_OF_HEAD = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding[ \t]*:.*chunked")
# aiohttp refuses a head beyond its line and field limits itself; this only stops the
# guard from buffering more than that while it looks for the end of the head.
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    min_body_rate: int = 500  # bytes a second, averaged from the end of the grace period
    body_grace: float = 10.0
    max_connections: int = 4096
    sweep_every: float = 0.5


class _Conn(asyncio.Protocol):
    """One connection: passes everything to aiohttp's handler, tracking the request's phase."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.phase = "head"  # head -> body -> done (waiting for the answer or the next request)
        self.since = time.monotonic()  # when the current phase began
        self.head = bytearray()
        self.body_left: int | None = 0  # None: chunked, ends at the last chunk
        self.body_got = 0

    # The asyncio.Protocol interface, forwarded.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.inner.connection_made(transport)
        if not self.guard._admit(self):
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard._conns.discard(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def data_received(self, data: bytes) -> None:
        self._track(data)
        self.inner.data_received(data)

    def _track(self, data: bytes) -> None:
        now = time.monotonic()
        view = memoryview(data)
        while view:
            if self.phase == "done":
                self.phase, self.since = "head", now  # the next request, pipelined or not
                self.head.clear()
            if self.phase == "head":
                before = len(self.head)
                chunk = view[:_MAX_HEAD]
                self.head += chunk
                # The end of the head may straddle two reads: search from 3 bytes back.
                end = self.head.find(_END_OF_HEAD, max(0, before - 3))
                if end < 0:
                    if len(self.head) > _MAX_HEAD:
                        del self.head[:-3]  # aiohttp refuses such a head; keep watching
                    view = view[len(chunk):]
                    continue
                head = bytes(self.head[: end + 4])
                view = view[end + 4 - before:]
                self._begin_body(head, now)
            elif self.phase == "body":
                if self.body_left is None:
                    self.body_got += len(view)
                    # The last chunk: close enough for a deadline, aiohttp parses it exactly.
                    if bytes(view[-5:]) == b"0\r\n\r\n":
                        self.phase = "done"
                    return
                take = min(self.body_left, len(view))
                self.body_left -= take
                self.body_got += take
                view = view[take:]
                if self.body_left == 0:
                    self.phase = "done"

    def _begin_body(self, head: bytes, now: float) -> None:
        self.head.clear()
        self.body_got = 0
        self.since = now
        if _CHUNKED.search(head):
            self.phase, self.body_left = "body", None
            return
        m = _CONTENT_LENGTH.search(head)
        length = int(m.group(1)) if m else 0
        self.phase, self.body_left = ("body", length) if length else ("done", 0)

    def overdue(self, now: float, limits: Limits) -> str | None:
        """Why this connection should be cut off now, if it should."""
        elapsed = now - self.since
        if self.phase == "head" and elapsed > limits.header_timeout:
            return f"request head not complete within {limits.header_timeout:g} s"
        if (self.phase == "body" and elapsed > limits.body_grace
                and self.body_got < limits.min_body_rate * (elapsed - limits.body_grace)):
            return f"request body slower than {limits.min_body_rate} bytes/s"
        return None


class Guard:
    """A protocol factory around aiohttp's: `loop.create_server(Guard(server, limits), ...)`."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limits: Limits) -> None:
        self.factory = factory
        self.limits = limits
        self._conns: set[_Conn] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.cut_off = 0
        self.turned_away = 0

    def __call__(self) -> asyncio.Protocol:
        return _Conn(self, self.factory())

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def _admit(self, conn: _Conn) -> bool:
        if len(self._conns) >= self.limits.max_connections:
            self.turned_away += 1
            if self.turned_away == 1 or self.turned_away % 1000 == 0:
                log.warning("connection limit %d reached; %d turned away so far",
                            self.limits.max_connections, self.turned_away)
            return False
        self._conns.add(conn)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return True

    async def _sweep(self) -> None:
        # One timer for every connection instead of one each: thousands of call_later
        # handles re-armed on every read cost more than a scan twice a second.
        while self._conns:
            await asyncio.sleep(self.limits.sweep_every)
            now = time.monotonic()
            for conn in list(self._conns):
                reason = conn.overdue(now, self.limits)
                if reason and conn.transport is not None:
                    self.cut_off += 1
                    log.info("closing a slow client (%s)", reason)
                    self._conns.discard(conn)
                    conn.transport.abort()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite with every connection watched by a Guard."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int,
                 limits: Limits, **kw) -> None:
        kw.setdefault("backlog", 1024)  # a burst of connections is not refused by the kernel
        super().__init__(runner, host, port, **kw)
        self.limits = limits
        self.guard: Guard | None = None

    async def start(self) -> None:
        # TCPSite.start with the protocol factory wrapped; BaseSite.start registers the site.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.guard = Guard(server, self.limits)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard, self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.guard is not None:
            await self.guard.close()
        await super().stop()
