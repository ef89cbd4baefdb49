"""The central's cost of customer deltas at a chain's load (`python -m bench.ingest --fanout`).

Every member's receipt marks its customer changed for every till: each till's next pull
(every `pull_every_s`) carries every customer changed since its cursor. At `tills` tills
selling `receipts_per_till_minute` receipts each, `member_share` of them members', a pull
carries tills x receipts a minute x pull interval x member share changed customers: 600
at 2,000 tills, one receipt a till a minute, a 30 s pull and 60 % members.

Measured: the central's work (its process's CPU time, and wall time) for one such pull of
one till, as its handler does it (central.deltas.customer_deltas_json: the page's queries,
balances replayed to now, budget allowances, the views recorded for re-pricing, the JSON),
without HTTP and the request's signature check. Several tills pull the same changes in
turn; the median is taken. From it: the cost per till per minute, and the cores of central
processes the chain's fan-out keeps busy. The database holds `members` members, each with a
card and a lot; the issue's chain has 5,000,000, which only deepens the indexes the pull
looks up by (logarithmic): a smaller count is a fair scale model, and the figure says which
was used.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from datetime import timedelta

from bench import ingest_data
from bench.scratch_database import scratch_database
from central import db, deltas, ledger, rulesets
from central.clock import iso

CHUNK = 20_000


def fanout(members: int, tills: int = 2000, receipts_per_till_minute: float = 1.0,
           pull_every_s: int = 30, member_share: float = 0.6, pulls: int = 20,
           seed: int = 1, database: str | None = None) -> dict:
    rng = random.Random(seed)
    changed = round(tills * receipts_per_till_minute * pull_every_s / 60 * member_share)
    changed = min(changed, members)
    now = ingest_data.now()
    with scratch_database(database) as target:
        conn = db.connect(target)
        try:
            rulesets.ensure_default(conn, now - timedelta(days=1))
            _members(conn, members, now)
            puller_ids = [f"till_{i:05d}" for i in range(pulls)]
            conn.executemany(
                "INSERT INTO tills (id, name, store, public_key, enrolled_at)"
                " VALUES (?, ?, 's1', ?, ?)",
                [(t, t, f"key-{t}", iso(now)) for t in puller_ids])
            cursor = int(conn.execute("SELECT MAX(change_seq) FROM customers").fetchone()[0])
            # What half a minute of the chain's member receipts changes: balances and marks.
            touched = [f"cus_{i:09d}" for i in rng.sample(range(members), changed)]
            with db.transaction(conn):
                conn.executemany("UPDATE lots SET remaining = remaining + 1"
                                 " WHERE customer_id = ?", [(c,) for c in touched])
                ledger.touch_many(conn, touched)
            seconds, cpu = [], []
            for till in puller_ids:
                started, started_cpu = time.perf_counter(), time.process_time()
                page = deltas.customer_deltas_json(conn, till, cursor, now)
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                assert len(json.loads(page)["customers"]) == changed, "a pull missed changes"
        finally:
            conn.close()
    # The central process's own CPU is what its cores spend (on SQLite that includes the
    # database's work; on PostgreSQL the server's share runs apart): the sizing figures
    # are from it. Wall time also holds waits on a busy machine and on the server.
    per_pull = statistics.median(cpu)
    per_till_minute = per_pull * 60 / pull_every_s
    return {"members": members, "tills": tills, "changed_per_pull": changed,
            "pull_every_s": pull_every_s, "pulls_timed": pulls,
            "pull_wall_ms": round(statistics.median(seconds) * 1000, 1),
            "pull_cpu_ms": round(per_pull * 1000, 1),
            "customers_per_s_one_core": round(changed / per_pull),
            "cost_per_till_minute_cpu_ms": round(per_till_minute * 1000, 1),
            "central_cores_for_fanout": round(tills * per_till_minute / 60, 1)}


def _members(conn: db.Connection, members: int, now) -> None:  # type: ignore[no-untyped-def]
    """`members` customers, each with a card and an active lot, written in bulk."""
    at, expires = iso(now - timedelta(days=30)), iso(now + timedelta(days=300))
    for start in range(0, members, CHUNK):
        ids = [f"cus_{i:09d}" for i in range(start, min(members, start + CHUNK))]
        with db.transaction(conn):
            conn.executemany("INSERT INTO customers (id, created_at, change_seq)"
                             " VALUES (?, ?, 0)", [(c, at) for c in ids])
            conn.executemany("INSERT INTO cards (token, customer_id, last4, created_at)"
                             " VALUES (?, ?, '0000', ?)", [(f"tok-{c}", c, at) for c in ids])
            conn.executemany("INSERT INTO lots (customer_id, points, remaining, activates_at,"
                             " expires_at, status) VALUES (?, 500, 500, ?, ?, 'active')",
                             [(c, at, expires) for c in ids])
