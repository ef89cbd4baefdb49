"""Central ingest benchmark: signed batches from 1,000 simulated tills into the ledger.

    python -m bench.ingest --json
    python -m bench.ingest --json --database postgresql://postgres@127.0.0.1:5432/postgres
    python -m bench.ingest --json --followers process   # (or inline, or none)
    python -m bench.ingest --json --http [--processes N] [--database URL]   # bench.ingest_http
    python -m bench.ingest --json --fanout [--fanout-members 5000000]   # see bench.fanout

`--database` runs on PostgreSQL (in a schema of its own, dropped afterwards) instead of a
temporary SQLite file. Durability is the central's own: PostgreSQL with the server's
synchronous_commit (printed as `durability`), SQLite in WAL with synchronous=NORMAL. No
figure is bought by turning either off.

receipts_per_s: `--tills` tills (default 1,000) send at once, as they do in a busy hour:
each till's journal is cut into batches of `--batch` entries, and each till sends its next
batch only when the previous one is acknowledged, as the agent's sync client does. Every
batch goes through `central.ingest_writer.IngestWriter.submit` exactly as the HTTP handler
calls it: signature check, decoding, chain and sequence checks, journal and receipt rows,
ledger application (lots, redemptions, debts), committed before its acknowledgement (the
writer commits the batches that queued meanwhile together: group commit). Timed: from the
first batch submitted to the last one acknowledged; the database is then checked to hold
every entry. HTTP is not included here; catch_up_s includes it.

--followers: the central's background jobs (re-pricing, campaign budgets, maturing, tier
windows; central.followers) during that ingest. `none` (the default) runs none, as before.
`inline` runs them on the ingest's own event loop and connection, as `tillpoint central
run` does with `--role all`. `process` runs them in a `tillpoint central run --role
followers` process of their own beside it, as with `--role ingest` API processes. Every
member's entry carries a view of the customer the central is recorded to have delivered,
so re-pricing does its real work (and credits the points). Reported: receipts_per_s, the
entries re-pricing was behind when the last batch was acknowledged, and the seconds after
that until re-pricing and budgets had done every entry.

catch_up_s: one till back after 7 days offline with 5,000 receipts, from reconnect to fully
acknowledged: a real central process, the agent's own sync client, real HTTP.

The figures are also written to bench/results/ingest.json (with --http, ingest_http.json).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

from bench import ingest_data
from bench.catch_up import catch_up
from bench.fanout import fanout
from bench.ingest_http import through_http
from bench.scratch_database import scratch_database
from central import (
    campaign_budgets,
    db,
    followers,
    repricing,
)
from central.clock import utcnow
from central.ingest_writer import IngestWriter
from tillpoint.processes import tillpoint_cmd

FOLLOWER_MODES = ("none", "inline", "process")

RESULTS = Path(__file__).parent / "results" / "ingest.json"
RESULTS_HTTP = RESULTS.with_name("ingest_http.json")


def throughput(tills: int, per_till: int, batch: int, customers: int, seed: int,
               database: str | None = None, followers_mode: str = "none") -> dict:
    rng = random.Random(seed)
    with scratch_database(database) as target:
        conn = db.connect(target)
        rounds, now = ingest_data.prepare(conn, tills, per_till, batch, customers, rng)
        receipts = tills * per_till
        durability = _durability(conn)
        gc.collect()
        with _followers_process(target) if followers_mode == "process" else nullcontext():
            elapsed, cpu, behind, caught_up = asyncio.run(
                _send_all(conn, rounds, now, inline=followers_mode == "inline",
                          follow=followers_mode != "none"))
        held = conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        mismatches = repricing.progress(conn)["mismatches"]
        conn.close()
    assert held == receipts, f"{held} of {receipts} entries held"
    out = {"receipts": receipts, "batches": sum(map(len, rounds)), "batch_entries": batch,
           "seconds": round(elapsed, 3), "receipts_per_s": round(receipts / elapsed),
           # The ingest process's own CPU for it: unlike the wall time, not moved by what
           # else the machine runs (on PostgreSQL the server's share runs apart).
           "cpu_ms_per_1000": round(cpu * 1e6 / receipts),
           "durability": durability, "followers": followers_mode}
    if followers_mode != "none":
        out.update(repricing_behind_at_end=behind,
                   followers_caught_up_s=round(caught_up, 3),
                   repricing_mismatches=mismatches)
    return out


def _durability(conn: db.Connection) -> str:
    if conn.dialect.name == "postgresql":
        return "synchronous_commit=" + conn.execute("SHOW synchronous_commit").fetchone()[0]
    return "wal, synchronous=" + {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
        conn.execute("PRAGMA synchronous").fetchone()[0]]


async def _send_all(conn: db.Connection, rounds: list[list[bytes]], now: datetime, *,
                    inline: bool = False, follow: bool = False,
                    ) -> tuple[float, float, int, float]:
    """Every till sends its batches one after the other, all tills at once: the seconds
    taken and this process's CPU seconds; then (`follow`) the entries re-pricing was behind
    at that moment and the seconds until the followers had done every entry. `inline`: the
    followers run on this loop."""
    writer = IngestWriter(conn)

    async def till(batches: list[bytes]) -> None:
        for data in batches:
            await writer.submit(data, now)

    jobs = followers.jobs(conn) if inline else []
    behind, caught_up = 0, 0.0
    async with followers.running(jobs, lambda: conn, utcnow):
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            await asyncio.gather(*(till(r) for r in rounds))
        finally:
            await writer.close()
        ended, cpu = time.perf_counter(), time.process_time() - started_cpu
        if follow:
            behind = _repricing_behind(conn)
            while _repricing_behind(conn) or campaign_budgets.behind(conn):
                await asyncio.sleep(0.05)
            caught_up = time.perf_counter() - ended
    return ended - started, cpu, behind, caught_up


def _repricing_behind(conn: db.Connection) -> int:
    return repricing.progress(conn)["behind"]


@contextmanager
def _followers_process(target: Path | str) -> Iterator[None]:
    """`tillpoint central run --role followers` on the bench's database, until the block
    ends; ready when it tells so (the systemd notification protocol, on a socket of ours)."""
    with tempfile.TemporaryDirectory(prefix="bench-followers-") as tmp:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(f"{tmp}/notify")
        notify.settimeout(60)
        data, url = (Path(tmp), str(target)) if isinstance(target, str) else \
            (target.parent, None)
        proc = subprocess.Popen(
            tillpoint_cmd("central", "run", "--role", "followers", "--data", str(data),
                          *(["--database", url] if url else [])),
            env={**os.environ, "NOTIFY_SOCKET": f"{tmp}/notify"})
        try:
            while b"READY=1" not in notify.recv(4096):
                pass
            yield
        finally:
            proc.terminate()
            proc.wait(30)
            notify.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tills", type=int, default=1000, help="simulated tills (%(default)s)")
    p.add_argument("--receipts-per-till", type=int, default=50, help="(%(default)s)")
    p.add_argument("--batch", type=int, default=50, help="entries per batch (%(default)s)")
    p.add_argument("--customers", type=int, default=20_000, help="members (%(default)s)")
    p.add_argument("--catch-up-receipts", type=int, default=5000, help="(%(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-catch-up", action="store_true", help="measure ingest only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--fanout", action="store_true",
                   help="measure the customer deltas' fan-out to 2,000 tills instead"
                        " (bench.fanout)")
    p.add_argument("--fanout-members", type=int, default=200_000,
                   help="members in the fan-out's database (%(default)s; the chain has"
                        " 5,000,000)")
    p.add_argument("--followers", choices=FOLLOWER_MODES, default="none",
                   help="the background jobs during ingest: none, on the ingest's loop"
                        " (inline), or in a process of their own (%(default)s)")
    p.add_argument("--http", action="store_true",
                   help="through the real HTTP API of running central processes"
                        " (bench.ingest_http)")
    p.add_argument("--processes", type=int,
                   help="central processes with --http (default 1 on SQLite, 2 on"
                        " PostgreSQL)")
    p.add_argument("--database", metavar="URL",
                   help="a PostgreSQL URL to run on (default: a temporary SQLite file)")
    args = p.parse_args(argv)
    # Overspend alerts are part of the load; their log lines are not part of the output.
    logging.basicConfig(level=logging.ERROR)
    database = "postgresql" if args.database else "sqlite"
    if args.fanout:
        return _print({"database": database,
                       **fanout(args.fanout_members, seed=args.seed, database=args.database)},
                      args.json)
    result: dict = {"tills": args.tills, "database": database}
    if args.http:
        h = through_http(args.tills, args.receipts_per_till, args.batch, args.customers,
                         args.seed, args.database, args.processes)
        result.update(receipts_per_s=h["receipts_per_s"], http=h)
        RESULTS_HTTP.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_HTTP.write_text(json.dumps(result, indent=2) + "\n")
        return _print(result, args.json)
    t = throughput(args.tills, args.receipts_per_till, args.batch, args.customers, args.seed,
                   args.database, args.followers)
    result.update(receipts_per_s=t["receipts_per_s"], ingest=t)
    if not args.no_catch_up:
        c = asyncio.run(catch_up(args.catch_up_receipts, args.seed, database=args.database))
        result.update(catch_up_s=c["seconds"], catch_up=c)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return _print(result, args.json)


def _print(result: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
