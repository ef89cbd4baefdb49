"""Slow and idle clients against the central (central.connection_guard): a client that
trickles its request is cut off, one on a slow but honest link is served, a connection
beyond the limit is turned away, and two thousand tricklers do not keep a real batch from
being acknowledged at once."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from central.app import KEEPALIVE_S, make_app, raise_file_limit
from central.connection_guard import GuardedSite, Limits
from tests.till_double import TestTill
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for

HEAD = b"POST /sync/v1/batches HTTP/1.1\r\nHost: central\r\n"


@contextlib.asynccontextmanager
async def guarded_central(tmp_path: Path, limits: Limits):
    runner = web.AppRunner(make_app(tmp_path / "central", reprice_every=None),
                           keepalive_timeout=KEEPALIVE_S)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, limits)
    await site.start()
    try:
        yield site
    finally:
        await runner.cleanup()


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the other end closes the connection within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


QUICK = Limits(header_timeout=1.0, min_body_rate=1000, body_grace=1.0, sweep_every=0.1)


async def test_a_client_trickling_its_headers_is_cut_off(tmp_path):
    async with guarded_central(tmp_path, QUICK) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(HEAD)
        start = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(20):
                    writer.write(b"X")
                    await writer.drain()
                    await asyncio.sleep(0.3)

        task = asyncio.create_task(trickle())
        assert await closed_by_peer(reader, 5.0)
        assert 0.9 < time.monotonic() - start < 3.0
        task.cancel()
        writer.close()
        assert site.guard is not None and site.guard.cut_off == 1


async def test_a_connection_that_sends_nothing_is_cut_off(tmp_path):
    async with guarded_central(tmp_path, QUICK) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        assert await closed_by_peer(reader, 5.0)
        writer.close()


async def test_a_body_below_the_minimum_rate_is_cut_off(tmp_path):
    async with guarded_central(tmp_path, QUICK) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(HEAD + b"Content-Length: 100000\r\n\r\n")
        for _ in range(5):  # 10 bytes a second against a minimum of 1000
            writer.write(b"x")
            await writer.drain()
            if await closed_by_peer(reader, 0.1):
                break
        assert await closed_by_peer(reader, 3.0)
        writer.close()


async def test_a_slow_but_steady_body_is_served(tmp_path):
    """A store on a slow mobile link: 3 kB/s against a minimum of 1 kB/s, for 3 s."""
    async with guarded_central(tmp_path, QUICK) as site:
        body = b'{"token": "' + b"a" * 9000 + b'", "public_key": "00"}'
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"POST /sync/v1/enroll HTTP/1.1\r\nHost: central\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), 300):
            writer.write(body[i:i + 300])
            await writer.drain()
            await asyncio.sleep(0.1)
        status = await asyncio.wait_for(reader.readline(), 5.0)
        # The request was heard out and answered by the application (a bad key).
        assert status.startswith(b"HTTP/1.1 400"), status
        writer.close()
        assert site.guard is not None and site.guard.cut_off == 0


async def test_connections_beyond_the_limit_are_turned_away(tmp_path):
    limits = Limits(header_timeout=30.0, max_connections=5, sweep_every=0.1)
    async with guarded_central(tmp_path, limits) as site:
        held = [await asyncio.open_connection("127.0.0.1", site.port) for _ in range(5)]
        await wait_for(lambda: site.guard.open_connections == 5 or None, "5 connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        assert await closed_by_peer(reader, 3.0)
        writer.close()
        assert site.guard.turned_away == 1
        for _, w in held:
            w.close()
        # Room again once they are gone: a real request is answered.
        await wait_for(lambda: site.guard.open_connections == 0 or None, "connections closed")
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{site.port}/sync/v1/ruleset") as resp:
            assert resp.status == 401


TRICKLERS = 2000


@pytest.fixture
def many_files():
    """This process holds two thousand sockets: raise its open-file limit, then restore it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_file_limit(TRICKLERS + 512) < TRICKLERS + 512:
        pytest.skip("the hard open-file limit is below what two thousand sockets need")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


async def test_two_thousand_tricklers_do_not_keep_a_real_batch_waiting(tmp_path, many_files):
    procs = Processes(tmp_path / "logs")
    data, port_file = tmp_path / "central", tmp_path / "central.port"
    held: list[asyncio.StreamWriter] = []
    try:
        procs.start("central", tillpoint_cmd(
            "central", "run", "--data", str(data), "--port", "0",
            "--port-file", str(port_file), "--header-timeout", "5"))
        port = int(await wait_for(lambda: read_file(port_file), "the central's port",
                                  check=procs.check_alive))
        url = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {(data / 'admin-token').read_text().strip()}"}
        async with aiohttp.ClientSession() as http:
            till = await enrol(http, url, admin)
            till.sale(None)

            readers = []
            for _ in range(TRICKLERS // 200):  # in waves: the listen backlog is finite
                conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                               for _ in range(200)))
                for r, w in conns:
                    w.write(HEAD)
                    readers.append(r)
                    held.append(w)
            for w in held:
                w.write(b"X")  # a byte now and then, never the end of the head
            start = time.monotonic()
            async with http.post(f"{url}/sync/v1/batches", data=till.batch(),
                                 headers={"Content-Type": "application/msgpack"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["acked_seq"] == 1
            assert time.monotonic() - start < 2.0
            # Every trickler was still connected while the batch went through ...
            assert not any(r.at_eof() for r in readers)
            # ... and every one is cut off once its head is overdue.
            cut = await asyncio.gather(*(closed_by_peer(r, 30.0) for r in readers))
            assert all(cut)
            procs.check_alive()
    finally:
        for w in held:
            w.close()
        procs.stop_all()


async def enrol(http: aiohttp.ClientSession, url: str, admin: dict[str, str]) -> TestTill:
    till = TestTill()
    async with http.post(f"{url}/api/v1/enrolment-tokens", json={"store": "s1"},
                         headers=admin) as resp:
        token = (await resp.json())["token"]
    async with http.post(f"{url}/sync/v1/enroll",
                         json=till.enrolment(token)) as resp:
        assert resp.status == 200, await resp.text()
        till.till_id = (await resp.json())["till_id"]
    return till


def test_every_unit_sets_an_open_file_limit():
    units = sorted((Path(__file__).parent.parent / "systemd").glob("*.service"))
    assert units
    for unit in units:
        assert "\nLimitNOFILE=" in unit.read_text(), unit.name
