"""One till back after 7 days offline: from reconnect to every entry acknowledged.

A real central process on real HTTP; the till is the agent's own store and sync client,
with a journal of `receipts` entries written over the past week (members' sales with the
rules engine's settlements, some spending points). Timed: `SyncClient.push()` from its
first request until the central has acknowledged the last entry.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlite_utils

from agent import identity, journal
from agent.central_client import CentralClient
from agent.store import open_store
from agent.sync import SyncClient
from bench import ingest_data
from bench.scratch_database import scratch_database
from protocol.journal import JournalEntry, new_receipt_id
from tillpoint.demo import card_number
from tillpoint.store_harness import StoreHarness

OFFLINE = timedelta(days=7)


async def catch_up(receipts: int, seed: int, members: int = 100,
                   database: str | None = None) -> dict:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-catch-up-") as tmp, \
            scratch_database(database) as target:
        url = target if isinstance(target, str) else None
        async with StoreHarness(Path(tmp), database=url) as store:
            await store.start_central()
            ids = [(await store.office("POST", "/api/v1/customers", {
                "card_number": card_number(i + 1), "welcome_bonus": 1000}))["id"]
                for i in range(members)]
            token = (await store.office("POST", "/api/v1/enrolment-tokens",
                                        {"store": store.store}))["token"]
            state = Path(tmp) / "till"
            ident = await identity.enroll(state, store.central_url, token, "bench-till")
            db = open_store(state / "agent.db")
            _write_week(db, rng, ids, receipts)
            last_seq, _ = journal.last(db)
            client = CentralClient(ident, timeout_s=60)
            sync = SyncClient(db, client)
            try:
                started = time.perf_counter()
                acked = await sync.push()
                elapsed = time.perf_counter() - started
            finally:
                await client.close()
                db.close()
            held = (await store.office("GET", f"/api/v1/tills/{ident.till_id}/journal"))
    assert acked == last_seq == receipts, (acked, last_seq)
    assert len(held["entries"]) == receipts
    return {"receipts": receipts, "offline_days": OFFLINE.days, "seconds": round(elapsed, 3),
            "receipts_per_s": round(receipts / elapsed)}


def _write_week(db: sqlite_utils.Database, rng: random.Random, ids: list[str],
                receipts: int) -> None:
    now = ingest_data.now()
    start = now - OFFLINE
    tpls = ingest_data.templates(rng, start)
    step = OFFLINE / receipts
    for first in range(0, receipts, 500):
        with db.atomic():
            for i in range(first, min(receipts, first + 500)):
                t = rng.choice(tpls)
                at = start + step * i
                member = rng.random() < 0.6
                lots = t.earned_lots if member else []
                journal.append(db, JournalEntry(
                    seq=0, epoch="", prev_hash="", kind="sale", receipt_id=new_receipt_id(at),
                    at=at.isoformat(timespec="seconds"), store="store-1",
                    customer_id=rng.choice(ids) if member else None, ruleset_version=1,
                    total=t.total, fiscal_doc=i + 1,
                    earned=sum(lot["points"] for lot in lots),
                    redeemed=t.redeemed if member else 0, lots=lots, detail=t.detail))
