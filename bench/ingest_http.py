"""Ingest through the real HTTP API: `python -m bench.ingest --http [--processes N]`.

The same tills and journals as the in-process figure (bench.ingest_data), sent by many
concurrent tills over real HTTP to running `tillpoint central run --role ingest` processes
on the bench's database: each till posts its batches one after the other, each to the next
process in turn, as through a round-robin balancer. A 503 (the database busy or away) is
resent after its Retry-After, as the agent does. Timed: from the first batch posted to the
last one acknowledged; the database is then checked to hold every entry.

Where the time goes: the CPU seconds of each central process and of this client (which
posts prepared bytes, so most of its share is HTTP), beside the wall time. On SQLite one
process serves (its writer is in-process); on PostgreSQL `--processes` (default 2, one per
core here) share the database, as behind a balancer.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import ingest_data
from bench.scratch_database import scratch_database
from central import db
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for

HEADERS = {"Content-Type": "application/msgpack"}


def through_http(tills: int, per_till: int, batch: int, customers: int, seed: int,
                 database: str | None = None, processes: int | None = None) -> dict:
    processes = processes or (2 if database else 1)
    if database is None and processes != 1:
        raise SystemExit("--processes above 1 needs --database postgresql://... (SQLite's"
                         " writer is in one process)")
    rng = random.Random(seed)
    with scratch_database(database) as target, \
            tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        conn = db.connect(target)
        try:
            rounds, _ = ingest_data.prepare(conn, tills, per_till, batch, customers, rng)
        finally:
            conn.close()
        data = target.parent if isinstance(target, Path) else Path(tmp) / "central"
        procs = Processes(Path(tmp) / "logs")
        try:
            bases, pids = asyncio.run(_start(procs, data, target, processes, Path(tmp)))
            before = {pid: _cpu_s(pid) for pid in pids}
            elapsed, client_cpu, resent = asyncio.run(_post_all(rounds, bases))
            central_cpu = [round(_cpu_s(pid) - before[pid], 2) for pid in pids]
        finally:
            procs.stop_all()
        conn = db.connect(target)
        try:
            held = conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        finally:
            conn.close()
    receipts = tills * per_till
    assert held == receipts, f"{held} of {receipts} entries held"
    return {"receipts": receipts, "batches": sum(map(len, rounds)), "batch_entries": batch,
            "processes": processes, "seconds": round(elapsed, 3),
            "receipts_per_s": round(receipts / elapsed),
            "central_cpu_s": central_cpu, "client_cpu_s": round(client_cpu, 2),
            "resent_after_503": resent}


async def _start(procs: Processes, data: Path, target: Path | str, count: int,
                 workdir: Path) -> tuple[list[str], list[int]]:
    on = ["--database", target] if isinstance(target, str) else []
    bases, pids = [], []
    # The first makes the data directory's secrets; the others share them.
    for i in range(count):
        port_file = workdir / f"central-{i}.port"
        proc = procs.start(f"central-{i}", tillpoint_cmd(
            "central", "run", "--role", "ingest", "--data", str(data), "--port", "0",
            "--port-file", str(port_file), *on))
        port = await wait_for(lambda f=port_file: read_file(f), f"central {i} to listen",
                              timeout=120, check=procs.check_alive)
        bases.append(f"http://127.0.0.1:{port}")
        pids.append(proc.pid)
    return bases, pids


async def _post_all(rounds: list[list[bytes]], bases: list[str]) -> tuple[float, float, int]:
    resent = 0
    # One connection per till, as each till holds its own.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def post(base: str, body: bytes) -> None:
            nonlocal resent
            while True:
                async with http.post(f"{base}/sync/v1/batches", data=body,
                                     headers=HEADERS) as resp:
                    text = await resp.read()
                    if resp.status == 200:
                        return
                    if resp.status != 503:
                        raise RuntimeError(f"batch refused: {resp.status} {text[:200]!r}")
                    resent += 1
                    await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))

        async def till(n: int, batches: list[bytes]) -> None:
            for k, body in enumerate(batches):
                await post(bases[(n + k) % len(bases)], body)

        started, started_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(till(n, r) for n, r in enumerate(rounds)))
        return (time.perf_counter() - started, time.process_time() - started_cpu, resent)


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
