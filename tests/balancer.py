"""A round-robin HTTP balancer in front of several central processes, as haproxy or nginx
would be in a chain: each request goes to the next process in turn.

A process that refuses the connection (killed, not yet restarted) is passed over for the
next, as a balancer's redispatch does: the request never reached it, so trying another
changes nothing. A process that dies after it took the request leaves the caller a 502,
as a real balancer would; whether it applied the request, the caller cannot know, and
resends (a till's batch is idempotent).
"""

from __future__ import annotations

import itertools
from collections import Counter

import aiohttp
from aiohttp import web

from tests.fault_proxy import HOP_HEADERS


class Balancer:
    def __init__(self, upstreams: dict[str, str]) -> None:
        # Process name -> its URL. A killed process stays listed, as in a balancer's static
        # configuration, until whoever restarts it gives its new address.
        self.upstreams = dict(upstreams)
        self._turn = itertools.count()
        # Requests each process answered (by name), and requests passed on to the next.
        self.answered: Counter[str] = Counter()
        self.batches_acked: Counter[str] = Counter()
        self.redispatched = 0
        # Batches sent to a process while another process had one in hand: ingest at once.
        self.overlapped = 0
        self._batches_in_hand: Counter[str] = Counter()
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
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def close(self) -> None:
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        names = sorted(self.upstreams)
        start = next(self._turn)
        for k in range(len(names)):
            name = names[(start + k) % len(names)]
            url = self.upstreams.get(name)
            if url is None:
                continue
            batch = request.path == "/sync/v1/batches"
            if batch:
                if any(n != name and held for n, held in self._batches_in_hand.items()):
                    self.overlapped += 1
                self._batches_in_hand[name] += 1
            try:
                async with self._session.request(request.method, url + request.path_qs,
                                                 headers=headers, data=body or None) as resp:
                    data = await resp.read()
                    status, ctype = resp.status, resp.content_type
            except aiohttp.ClientConnectorError:
                self.redispatched += 1  # never reached it: the next one takes it
                continue
            except (TimeoutError, aiohttp.ClientError):
                return web.json_response({"error": "central failed (balancer)"}, status=502)
            finally:
                if batch:
                    self._batches_in_hand[name] -= 1
            self.answered[name] += 1
            if batch and status == 200:
                self.batches_acked[name] += 1
            return web.Response(status=status, body=data, content_type=ctype)
        return web.json_response({"error": "no central reachable (balancer)"}, status=503,
                                 headers={"Retry-After": "1"})
