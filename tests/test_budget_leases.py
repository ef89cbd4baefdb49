"""Campaign budgets lent to tills as leases that follow the sales: the whole budget can be
granted, an idle till's part goes back, and what an offline till can grant stays bounded."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.campaign_allowances import Allowances, save
from agent.store import open_store
from central import campaign_budgets, db, ingest_log, rulesets
from protocol.rules import default_ruleset_doc
from protocol.wire import pack

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BUDGET = 1000
PER_RECEIPT = 100


def central(tmp_path: Path, tills: int = 2, budget: int = BUDGET):
    conn = db.connect(tmp_path / "c.db")
    doc = default_ruleset_doc()
    doc["campaigns"].append({"id": "big", "priority": 5,
                             "effect": {"type": "per_receipt", "points": PER_RECEIPT},
                             "budget": {"total": budget}})
    version = rulesets.publish(conn, doc, "test", T0)
    for i in range(tills):
        conn.execute("INSERT INTO tills (id, name, store, public_key, enrolled_at,"
                     " current_epoch) VALUES (?, ?, 's1', ?, '', 'ep')",
                     (f"t{i}", f"t{i}", f"k{i}"))
    return conn, version


class Till:
    """What a till does with its allowance: grants up to it while its lease holds, keeps
    what it granted in its journal, and sends it at its next sync."""

    def __init__(self, conn, till_id: str, version: int) -> None:
        self.conn, self.id, self.version = conn, till_id, version
        self.seq = 0
        self.left = 0
        self.granted = 0
        self.expires: datetime | None = None
        self.unsent: list[tuple] = []

    def sync(self, now: datetime) -> None:
        if self.unsent:
            with db.transaction(self.conn):
                self.conn.executemany(
                    "INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind,"
                    " receipt_id, customer_id, body, received_at) VALUES (?, 'ep', ?, '', '',"
                    " 'sale', ?, NULL, ?, '')", self.unsent)
                # as ingest numbers what it applied
                ingest_log.record(self.conn, [(self.id, "ep", self.unsent[0][1],
                                               self.unsent[-1][1])])
            self.unsent = []
        campaign_budgets.account_pending(self.conn)
        budgets = campaign_budgets.budgets(self.conn)
        with db.transaction(self.conn):
            caps = campaign_budgets.till_allowances(self.conn, self.id, budgets, now)
        self.left = caps["big"]["till_remaining"]
        self.expires = datetime.fromisoformat(caps["big"]["lease_expires"])

    def sell(self, now: datetime) -> int:
        if self.expires is None or now >= self.expires:
            return 0  # no lease in force: the till grants nothing of the campaign
        grant = min(PER_RECEIPT, self.left)
        self.left -= grant
        self.seq += 1
        self.granted += grant
        body = pack({"kind": "sale", "at": now.isoformat(), "customer_id": None,
                     "ruleset_version": self.version,
                     "detail": {"settlement": {"campaign_totals": {"big": grant}}}})
        self.unsent.append((self.id, self.seq, f"{self.id}-r{self.seq}", body))
        return grant


def lent(conn, now: datetime) -> int:
    """What the tills hold of their unexpired leases and have not granted yet."""
    return conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN l.till_limit > COALESCE(u.used, 0)"
        " THEN l.till_limit - COALESCE(u.used, 0) ELSE 0 END), 0)"
        " FROM campaign_leases l LEFT JOIN campaign_till_usage u"
        " ON u.till_id = l.till_id AND u.campaign_id = l.campaign_id"
        " WHERE l.expires_at > ?", (now.isoformat(),)).fetchone()[0]


def used(conn) -> int:
    row = conn.execute("SELECT used FROM campaign_usage WHERE campaign_id = 'big'").fetchone()
    return row[0] if row else 0


def test_two_tills_one_sells_and_the_whole_budget_is_granted(tmp_path: Path):
    conn, version = central(tmp_path)
    busy, idle = Till(conn, "t0", version), Till(conn, "t1", version)
    now = T0
    for _ in range(12):  # a sync every few seconds, a sale or two between
        busy.sync(now)
        idle.sync(now)
        # The leases never add up to more than is left: no overshoot, online or not.
        assert used(conn) + lent(conn, now) <= BUDGET
        busy.sell(now)
        busy.sell(now)
        now += timedelta(seconds=5)
    busy.sync(now)
    assert busy.granted == BUDGET and used(conn) == BUDGET
    assert idle.granted == 0
    assert busy.sell(now) == 0  # nothing more


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.integers(1, 450), tills=st.integers(2, 5), orders=st.randoms())
def test_whatever_the_budget_and_the_sync_order_one_selling_till_grants_all_of_it(
        budget: int, tills: int, orders):
    # An uneven remainder, a budget smaller than the number of tills, idle tills syncing
    # between the seller's syncs: none may leave points that nobody is ever lent (CI once
    # stopped at 999 of 1000 with two tills).
    with tempfile.TemporaryDirectory() as tmp:
        conn, version = central(Path(tmp), tills, budget)
        everyone = [Till(conn, f"t{i}", version) for i in range(tills)]
        busy = everyone[0]
        now = T0
        for _ in range(budget // PER_RECEIPT + 4 * tills + 10):
            for till in orders.sample(everyone, tills):
                till.sync(now)
                assert used(conn) + lent(conn, now) <= budget
            busy.sell(now)
            now += timedelta(seconds=5)
        busy.sync(now)
        assert busy.granted == used(conn) == budget
        assert all(t.granted == 0 for t in everyone[1:])
        conn.close()


def test_an_offline_till_grants_at_most_its_lease_and_its_rest_comes_back(tmp_path: Path):
    conn, version = central(tmp_path)
    a, b = Till(conn, "t0", version), Till(conn, "t1", version)
    a.sync(T0)
    b.sync(T0)
    held_by_b = b.left
    assert 0 < held_by_b < BUDGET and a.left + held_by_b <= BUDGET
    # b goes offline: it sells, but never more than its lease, and nothing once it expired.
    offline = T0
    while b.sell(offline):
        offline += timedelta(minutes=1)
    assert b.granted == held_by_b
    expired = T0 + campaign_budgets.LEASE_TTL
    assert b.sell(expired) == 0
    # a sells and syncs: while b's lease holds, a never gets what b holds.
    now = T0
    while now < expired:
        a.sync(now)
        assert a.granted + a.left + held_by_b <= BUDGET
        a.sell(now)
        now += timedelta(seconds=30)
    # Once b's lease expired, what b held is lent again: the budget is not stuck behind a
    # till that may never come back.
    for _ in range(6):
        a.sync(now)
        a.sell(now)
        a.sell(now)
        now += timedelta(seconds=5)
    assert a.granted == BUDGET
    # b comes back with its sales: the overshoot is at most the lease it held.
    b.sync(now)
    assert used(conn) == BUDGET + b.granted <= BUDGET + held_by_b


def test_an_idle_tills_part_shrinks_at_each_of_its_syncs(tmp_path: Path):
    conn, version = central(tmp_path)
    busy, idle = Till(conn, "t0", version), Till(conn, "t1", version)
    parts = []
    now = T0
    for _ in range(4):
        busy.sync(now)
        idle.sync(now)
        parts.append(idle.left)
        for _ in range(3):
            busy.sell(now)
        now += timedelta(seconds=5)
    assert parts == sorted(parts, reverse=True) and parts[-1] < parts[0] // 2, parts


def test_the_till_grants_nothing_of_a_campaign_once_its_lease_expired(tmp_path: Path):
    store = open_store(tmp_path / "agent.db")
    expires = T0 + timedelta(minutes=15)
    with store.atomic():
        save(store, {"as_of_seq": 0, "campaigns": {
            "big": {"till_remaining": 300, "per_customer": None, "period": "campaign",
                    "period_key": "campaign", "lease_expires": expires.isoformat()},
            "open": {"till_remaining": None, "per_customer": 50, "period": "campaign",
                     "period_key": "campaign"}}}, None)
    allowances = Allowances(store)
    assert allowances.for_customer(None, expires - timedelta(seconds=1)) == {"big": 300}
    assert allowances.for_customer(None, expires) == {"big": 0}
    store.execute("INSERT INTO customers (id, available, pending, debt) VALUES ('c1', 0, 0, 0)")
    assert allowances.for_customer("c1", expires - timedelta(seconds=1)) == {
        "big": 300, "open": 50}
    assert allowances.for_customer("c1", expires) == {"big": 0, "open": 50}
    store.close()


def test_a_malformed_lease_time_is_refused_with_the_delta(tmp_path: Path):
    store = open_store(tmp_path / "agent.db")
    with pytest.raises(ValueError, match="lease_expires"):
        save(store, {"as_of_seq": 0, "campaigns": {
            "big": {"till_remaining": 3, "per_customer": None, "period": "campaign",
                    "lease_expires": "2026-11-23T10:00:00"}}}, None)
    store.close()


# -- two real tills --------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_real_tills_one_selling_grants_the_whole_budget(tmp_path: Path):
    import sqlite3

    from tillpoint.processes import wait_for
    from tillpoint.store_harness import StoreHarness

    card = "2990000000019"
    socks = {"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "category": "sports",
             "vat": "22"}
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        doc = default_ruleset_doc()
        doc["campaigns"].append({"id": "big", "priority": 5,
                                 "effect": {"type": "per_receipt", "points": PER_RECEIPT},
                                 "budget": {"total": BUDGET}})
        await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "marketing"})
        selling = await store.add_till("till-1")
        await store.add_till("till-2")  # online, pulling, selling nothing
        cid = (await store.office("POST", "/api/v1/customers", {"card_number": card}))["id"]
        await store.pos(selling, "POST", "/pos/v1/identify", {"card_number": card})
        central_db = sqlite3.connect(tmp_path / "central" / "central.db")

        def usage() -> tuple[int, int]:
            row = central_db.execute(
                "SELECT (SELECT COALESCE(SUM(used), 0) FROM campaign_usage"
                "        WHERE campaign_id = 'big'),"
                " (SELECT COALESCE(MAX(seq), 0) FROM budget_accounted WHERE till_id = ?)",
                (selling.till_id,)).fetchone()
            return row[0], row[1]

        for _ in range(30):
            sale = await store.pos(selling, "POST", "/pos/v1/receipts",
                                   {"customer_id": cid, "lines": [socks]})
            # Counted at the central, then a fresh lease at the till's next pull.
            await wait_for(lambda s=sale: usage()[1] >= s["seq"] or None,
                           "the central to count the sale", 60, store.procs.check_alive)
            counted_at = time.time()

            async def pulled(after: float = counted_at) -> bool | None:
                status = await store.pos(selling, "GET", "/pos/v1/status")
                return True if (status["sync"]["last_pull_ok"] or 0) > after else None

            await wait_for(pulled, "till-1 to pull a fresh allowance", 60,
                           store.procs.check_alive)
            assert usage()[0] <= BUDGET
            if usage()[0] == BUDGET:
                break
        assert usage()[0] == BUDGET, usage()
        # And no more of it: the next sale grants nothing of the campaign.
        before = usage()[0]
        last = await store.pos(selling, "POST", "/pos/v1/receipts",
                               {"customer_id": cid, "lines": [socks]})
        await wait_for(lambda: usage()[1] >= last["seq"] or None, "the count", 60,
                       store.procs.check_alive)
        assert usage()[0] == before == BUDGET
        central_db.close()


def test_two_processes_leasing_at_once_never_lend_the_same_points_twice():
    """On PostgreSQL two central processes may renew two tills' leases at the same moment:
    the second waits for the first's lease and lends only what is still free."""
    import threading

    from tests.databases import postgres_schema

    with postgres_schema() as url:
        first, second, watch = db.connect(url), db.connect(url), db.connect(url)
        try:
            version = rulesets.publish(first, {**default_ruleset_doc(), "campaigns": [
                *default_ruleset_doc()["campaigns"],
                {"id": "big", "priority": 5, "budget": {"total": BUDGET},
                 "effect": {"type": "per_receipt", "points": PER_RECEIPT}}]}, "test", T0)
            past = (T0 - timedelta(hours=1)).isoformat()
            with db.transaction(first):
                for t in ("t0", "t1"):
                    first.execute("INSERT INTO tills (id, name, store, public_key,"
                                  " enrolled_at, current_epoch) VALUES (?, ?, 's1', ?, '',"
                                  " 'ep')", (t, t, "k" + t))
                    # Each granted 300 since its last (expired) lease: each asks for 600.
                    first.execute("INSERT INTO campaign_till_usage VALUES (?, 'big', 300)",
                                  (t,))
                    first.execute("INSERT INTO campaign_leases VALUES (?, 'big', 300, 0, ?)",
                                  (t, past))
                first.execute("INSERT INTO campaign_usage VALUES ('big', 600)")
            budgets = campaign_budgets.budgets(first, version)
            answers: dict[str, int] = {}

            def lease(conn, till_id: str) -> None:
                with db.transaction(conn):
                    caps = campaign_budgets.till_allowances(conn, till_id, budgets, T0)
                    answers[till_id] = caps["big"]["till_remaining"]

            with db.transaction(first):
                answers["t0"] = campaign_budgets.till_allowances(
                    first, "t0", budgets, T0)["big"]["till_remaining"]
                other = threading.Thread(target=lease, args=(second, "t1"))
                other.start()
                deadline = time.monotonic() + 30
                while not watch.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%advisory%'").fetchone():
                    assert time.monotonic() < deadline, "the second lease never waited"
                    time.sleep(0.01)
            other.join(30)
            assert not other.is_alive()
            # 400 were free: the first took them all, the second nothing (without the lock
            # each would have taken 400).
            assert answers == {"t0": 400, "t1": 0}
        finally:
            for c in (first, second, watch):
                c.close()
