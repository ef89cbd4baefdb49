"""KPI benchmark: a month's KPIs for one region, over a chain's year of receipts.

    python -m bench.kpis --json
    python -m bench.kpis --json --database postgresql://postgres@127.0.0.1:5432/postgres

`--receipts` receipts (default 10,000,000) over `--days` days in `--stores` stores spread
over `--regions` regions; 60 % of them by `--members` members, a few per cent returns. They
are written as ingest writes them (journal, receipts, the ingest sequence) and counted by
the central's own follower (central.kpi_counts), as a running central does.

kpi_query_s: the 95th percentile of `--queries` (default 20) GET /api/v1/kpis-equivalent
reports (central.kpi_report.report) for a random month and region.
count_per_s: receipts the follower counts per second.
The figures are also written to bench/results/kpis.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.scratch_database import scratch_database
from central import db, ingest_log, kpi_counts, kpi_report, rulesets
from central.clock import iso
from central.repricing import RuleSets
from protocol.rules import default_ruleset_doc

RESULTS = Path(__file__).parent / "results" / "kpis.json"
FIRST_DAY = date(2025, 12, 1)
CHUNK = 50_000


def _setup(conn: db.Connection, args: argparse.Namespace, rng: random.Random) -> int:
    doc = default_ruleset_doc()
    doc["stores"] = {f"s{i:04d}": {"time_zone": "Europe/Moscow",
                                   "region": f"r{i % args.regions:02d}"}
                     for i in range(args.stores)}
    version = rulesets.publish(conn, doc, "bench", datetime.now(UTC))
    now = iso(datetime.now(UTC))
    members = [f"m{i:07d}" for i in range(args.members)]
    with db.transaction(conn):
        for start in range(0, len(members), CHUNK):
            conn.executemany(
                "INSERT INTO customers (id, tier, segments, created_at) VALUES (?, ?, ?, ?)",
                [(m, rng.choice(("base", "silver", "gold")), '["all"]', now)
                 for m in members[start:start + CHUNK]])
    seq = dict.fromkeys(doc["stores"], 0)
    stores = list(doc["stores"])
    written = 0
    while written < args.receipts:
        n = min(CHUNK, args.receipts - written)
        journal, receipts, ranges = [], [], []
        by_store: dict[str, list[tuple]] = {}
        for i in range(n):
            # In time order, as they arrive: the whole period over the whole run.
            at = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, 6, tzinfo=UTC) + \
                timedelta(seconds=(written + i) * args.days * 86400 // args.receipts)
            store = rng.choice(stores)
            member = rng.choice(members) if rng.random() < 0.6 else None
            kind = "return" if rng.random() < 0.03 else "sale"
            by_store.setdefault(store, []).append((kind, member, rng.randrange(5_000, 500_000),
                                                   iso(at)))
        for store, items in by_store.items():
            first = seq[store] + 1
            for kind, member, total, at in items:
                seq[store] += 1
                rid = f"{store}-{seq[store]}"
                journal.append((store, "e", seq[store], "", "", kind, rid, member, b"", at))
                receipts.append((store, rid, kind, member, store, total,
                                 total // 2000 if kind == "sale" else 0, 0, 0, 0, None, at,
                                 version))
            ranges.append((store, "e", first, seq[store]))
        with db.transaction(conn):
            conn.executemany(
                "INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
                " customer_id, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                journal)
            conn.executemany(
                "INSERT INTO receipts (till_id, receipt_id, kind, customer_id, store, total,"
                " earned, redeemed, clawback, refund, original_receipt_id, at,"
                " ruleset_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", receipts)
            ingest_log.record(conn, ranges)
        written += n
        print(f"written {written:,} receipts", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return version


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    with scratch_database(args.database) as target:
        conn = db.connect(target)
        try:
            _setup(conn, args, rng)
            cache = RuleSets(conn)
            started = time.perf_counter()
            while kpi_counts.count_pending(conn, cache, limit=20_000):
                pass
            counted_s = time.perf_counter() - started
            kpi_counts.snapshot_points(conn, datetime.now(UTC))
            timings = []
            for _ in range(args.queries):
                month = FIRST_DAY + timedelta(days=rng.randrange(0, max(1, args.days - 31)))
                start = month.replace(day=1)
                end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
                period = kpi_report.Period(start, end, region=f"r{rng.randrange(args.regions):02d}")
                t = time.perf_counter()
                kpi_report.report(conn, period)
                timings.append(time.perf_counter() - t)
        finally:
            conn.close()
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    return {
        "database": "postgresql" if args.database else "sqlite",
        "receipts": args.receipts, "stores": args.stores, "regions": args.regions,
        "members": args.members, "days": args.days,
        "count_per_s": round(args.receipts / counted_s),
        "kpi_query_s": round(p95, 3),
        "kpi_query_max_s": round(timings[-1], 3),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--receipts", type=int, default=10_000_000)
    p.add_argument("--stores", type=int, default=500)
    p.add_argument("--regions", type=int, default=10)
    p.add_argument("--members", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database", help="a postgresql:// URL (default: a temporary SQLite file)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    figures = run(args)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures) if args.json else
          "\n".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
