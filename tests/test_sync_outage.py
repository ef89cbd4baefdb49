"""A day without the central: the till sells on, backs off, and when the central is back every
receipt arrives once, in order. The day passes on the sync client's clocks, not in sleep."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from agent import journal
from agent.central_client import CentralError
from tests.conftest import FakeClock
from tests.fault_proxy import FaultPlan, FaultProxy
from tests.sync_fixtures import LocalTill, enrol, live_central
from tests.test_central_sync_api import new_customer

__all__ = ["live_central"]

STEP = timedelta(minutes=10)


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_a_day_offline_then_every_receipt_once_and_in_order(live_central, tmp_path):
    central = live_central
    ident = await enrol(central)
    cid = await new_customer(central, bonus=1000)
    proxy = FaultProxy(ident.central_url, FaultPlan(rate=0.0))
    ident = dataclasses.replace(ident, central_url=await proxy.start())
    mono, wall = FakeMonotonic(), FakeClock(datetime.now(UTC))
    till = LocalTill(ident, tmp_path / "agent.db", monotonic=mono, clock=wall,
                     max_backoff_s=60)
    try:
        till.sell(cid, earned=5, at=wall())
        assert await till.sync.push() == 1
        proxy.down = True
        attempts, delays = 0, []
        for _ in range(int(timedelta(hours=24) / STEP)):
            mono.t += STEP.total_seconds()
            wall.advance(seconds=STEP.total_seconds())
            till.sell(cid, earned=3, at=wall())
            till.sell(None, at=wall())
            if not till.sync.backing_off():
                attempts += 1
                with pytest.raises(CentralError):
                    await till.sync.push()
                delays.append(till.sync.state.next_attempt - mono.t)
        # Each failure waits longer, up to the cap: never a tight loop against a dead link.
        # The wait is jittered within the upper half of its ceiling (agent.retry_policy).
        for delay, ceiling in zip(delays, [1, 2, 4, 8, 16, 32, 60, 60], strict=False):
            assert ceiling / 2 <= delay <= ceiling
        assert min(delays[6:]) >= 30 and max(delays) <= 60
        assert till.sync.state.failures == attempts == 144
        assert central.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 1

        proxy.down = False
        mono.t += 60
        last = journal.last(till.db)[0]
        assert last == 1 + 2 * 144
        assert await till.sync.push() == last
        rows = central.db.execute(
            "SELECT j.seq, j.receipt_id, j.body FROM ingest_log l JOIN journal j"
            " ON j.till_id = l.till_id AND j.epoch = l.epoch"
            " AND j.seq BETWEEN l.first_seq AND l.last_seq"
            " WHERE l.till_id = ? ORDER BY l.ingest_seq, j.seq",
            (ident.till_id,)).fetchall()
        assert [r["seq"] for r in rows] == list(range(1, last + 1))  # in order, no gap
        assert len({r["receipt_id"] for r in rows}) == last  # each once
        local = journal.entries_from(till.db, 1, 10**6)
        assert [r["receipt_id"] for r in rows] == [e.receipt_id for e in local]
        receipts = central.db.execute("SELECT COUNT(*) FROM receipts").fetchone()[0]
        earned = central.db.execute(
            "SELECT COALESCE(SUM(points), 0) FROM ledger WHERE kind = 'earn'").fetchone()[0]
        assert (receipts, earned) == (last, 5 + 3 * 144)
        assert till.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    finally:
        await till.close()
        await proxy.close()
