"""Points mature and expire on time for every customer, whether anything looked at them or not.

The central's reads (ledger.balance at `now`) against protocol.balances.replay of the whole
story from nothing, over random stories and read times, with the maturing job off (and on:
it must change no read).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import db, ledger
from central.clock import iso
from protocol import balances
from protocol.balances import Balance, Credit, Earn, Lot, Spend, State
from tests.databases import KINDS, fresh_database

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
EMPTY = State((), 0)


def days(n: float) -> timedelta:
    return timedelta(days=n)


# -- the replay itself ----------------------------------------------------------------------

def test_a_lot_is_pending_through_its_window_then_available_then_gone():
    story = [Earn(T0, 1, 100, T0 + days(15), T0 + days(45))]
    at = lambda t: balances.replay(EMPTY, story, t).balance()  # noqa: E731
    assert at(T0 + days(15) - timedelta(seconds=1)) == Balance(0, 100, 0)
    assert at(T0 + days(15)) == Balance(100, 0, 0)
    assert at(T0 + days(45)) == Balance(0, 0, 0)


def test_a_lot_pays_debt_when_it_activates_before_it_can_expire():
    story = [Earn(T0, 1, 100, T0 + days(10), T0 + days(12)),
             Spend(T0 + days(1), 30)]
    # Read long after it expired: the 30 of debt were paid on day 10, 70 expired on day 12.
    assert balances.replay(EMPTY, story, T0 + days(40)).balance() == Balance(0, 0, 0)
    _, steps = balances.advance(balances.replay(EMPTY, story, T0 + days(2)), T0 + days(40))
    assert [(s.kind, s.points, s.at) for s in steps] == [
        ("activate", 100, T0 + days(10)), ("pay", 30, T0 + days(10)),
        ("expire", 70, T0 + days(12))]


def test_spending_takes_the_soonest_expiring_first_and_expired_points_are_never_spent():
    story = [Earn(T0, 1, 100, T0, T0 + days(300)), Earn(T0, 2, 100, T0, T0 + days(30)),
             Spend(T0 + days(31), 150)]
    # The 30-day lot expired unspent on day 30: 150 of the other's 100 leaves 50 of debt.
    assert balances.replay(EMPTY, story, T0 + days(31)).balance() == Balance(-50, 0, 50)


def test_a_clawback_takes_its_own_sales_pending_points_first():
    story = [Earn(T0, 1, 100, T0, T0 + days(300)),
             Earn(T0, 2, 40, T0 + days(15), T0 + days(400), receipt_id="r2"),
             Spend(T0 + days(1), 40, receipt_id="r2")]
    assert balances.replay(EMPTY, story, T0 + days(1)).balance() == Balance(100, 0, 0)


def test_a_credit_pays_debt_first():
    story = [Spend(T0, 30), Credit(T0 + days(1), 50, 9, T0 + days(1), T0 + days(100))]
    assert balances.replay(EMPTY, story, T0 + days(2)).balance() == Balance(20, 0, 0)


def test_lots_travel_to_tills_and_back_unchanged():
    lot = Lot(7, 40, T0 + days(15), T0 + days(380), active=False, receipt_id="r1")
    assert balances.lot_from_wire(balances.lot_to_wire(lot)) == lot
    with pytest.raises(ValueError, match="points"):
        balances.lot_from_wire({**balances.lot_to_wire(lot), "points": "40"})
    with pytest.raises(ValueError, match="activates"):
        balances.lot_from_wire({k: v for k, v in balances.lot_to_wire(lot).items()
                                if k != "activates"})


# -- the central against the replay -----------------------------------------------------------

@pytest.fixture
def conn(database):
    c = db.connect(database)
    c.execute("INSERT INTO customers (id, created_at) VALUES ('c1', ?)", (iso(T0),))
    yield c
    c.close()


def test_head_office_reads_see_points_activate_without_any_job(conn):
    ledger.earn(conn, "c1", 100, T0 + days(15), T0 + days(380), T0,
                ledger.Source(till_id="t1", receipt_id="r1"))
    assert ledger.balance(conn, "c1", T0 + days(20)) == ledger.Balance(100, 0, 0)
    # Nothing was written: the stored figures still say pending until the job runs.
    assert ledger.balance(conn, "c1") == ledger.Balance(0, 100, 0)
    changed = conn.execute("SELECT change_seq FROM customers WHERE id = 'c1'").fetchone()[0]
    assert ledger.mature_due(conn, T0 + days(20)) == 1
    assert ledger.balance(conn, "c1") == ledger.Balance(100, 0, 0)
    # Marked changed: every till pulls the new figures with its next delta.
    assert conn.execute("SELECT change_seq FROM customers WHERE id = 'c1'").fetchone()[0] \
        > changed
    assert ledger.mature_due(conn, T0 + days(20)) == 0


operation = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 200), st.integers(0, 20), st.integers(0, 40)),
    st.tuples(st.just("redeem"), st.integers(1, 250), st.just(0), st.just(0)),
    st.tuples(st.just("clawback"), st.integers(1, 150), st.integers(0, 5), st.just(0)),
    st.tuples(st.just("adjust"), st.integers(-150, 150).filter(bool), st.just(0),
              st.integers(0, 40)),
)
story = st.lists(
    st.tuples(operation,
              st.integers(0, 12 * 24),  # hours since the operation before
              st.lists(st.integers(0, 60 * 24), max_size=3),  # reads, hours after it
              st.booleans()),  # the maturing job runs just before the operation
    min_size=1, max_size=25)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=story, job=st.booleans())
def test_every_read_equals_the_replay_of_the_story(tmp_path_factory, kind, ops, job):
    with fresh_database(kind, tmp_path_factory.mktemp("replay")) as target:
        _replay_story(db.connect(target), ops, job)


def _replay_story(conn: db.Connection, ops: list, job: bool) -> None:
    conn.execute("INSERT INTO customers (id, created_at) VALUES ('c1', ?)", (iso(T0),))
    try:
        events: list[balances.Event] = []
        now = T0
        key = 0
        for n, ((op, points, a, b), gap_h, reads_h, run_job) in enumerate(ops):
            now += timedelta(hours=gap_h)
            if job and run_job:
                ledger.mature_due(conn, now)
            receipt = f"r{n}" if op == "earn" else f"r{a}"
            # An adjustment is head office's and names no receipt: were it tied to a sale's
            # receipt, a clawback of that sale could take it (the replay's Earn names none).
            src = (ledger.Source(actor="office") if op == "adjust"
                   else ledger.Source(till_id="t1", seq=n, receipt_id=receipt))
            if op == "earn":
                key += 1
                starts, ends = now + timedelta(days=a), now + timedelta(days=a + b)
                ledger.earn(conn, "c1", points, starts, ends, now, src)
                events.append(Earn(now, key, points, starts, ends, receipt_id=receipt))
            elif op == "adjust" and points > 0:
                key += 1
                ledger.earn(conn, "c1", points, now, now + timedelta(days=b), now, src,
                            kind="adjust")
                events.append(Earn(now, key, points, now, now + timedelta(days=b)))
            elif op in ("redeem", "adjust"):
                ledger.redeem(conn, "c1", abs(points), now, src)
                events.append(Spend(now, abs(points)))
            else:
                ledger.clawback(conn, "c1", points, receipt, now, src)
                events.append(Spend(now, points, receipt_id=receipt))
            for h in reads_h:
                read_at = now + timedelta(hours=h)
                expected = balances.replay(EMPTY, events, read_at).balance()
                got = ledger.balance(conn, "c1", read_at)
                assert (got.available, got.pending, got.debt) == (
                    expected.available, expected.pending, expected.debt), (h, events)
        # The ledger's own invariant holds once the job has written everything back.
        ledger.mature_due(conn, now + timedelta(days=400))
        stored = ledger.balance(conn, "c1")
        assert ledger.movement_total(conn, "c1") == stored.available + stored.pending
    finally:
        conn.close()


def test_a_lot_that_activated_earlier_pays_debt_before_a_lot_earned_later(conn):
    def s(r: str) -> ledger.Source:
        return ledger.Source(till_id="t1", receipt_id=r)

    ledger.redeem(conn, "c1", 30, T0, s("overspent"))  # 30 of debt
    ledger.earn(conn, "c1", 100, T0 + days(15), T0 + days(400), T0, s("a"))
    # Day 20, nothing looked at the customer since: a bonus that lives two days arrives.
    ledger.earn(conn, "c1", 50, T0 + days(20), T0 + days(22), T0 + days(20), s("b"))
    # The first lot paid the debt on day 15; the bonus expires whole.
    assert ledger.balance(conn, "c1", T0 + days(23)) == ledger.Balance(70, 0, 0)


def test_tills_receive_the_balance_as_of_the_pull_and_the_lots_behind_it(conn):
    from central import deltas

    conn.execute("INSERT INTO tills (id, name, store, public_key, enrolled_at, current_epoch)"
                 " VALUES ('t1', 't1', 's1', 'k1', '', 'ep')")
    ledger.earn(conn, "c1", 100, T0 + days(15), T0 + days(45), T0,
                ledger.Source(till_id="t1", receipt_id="r1"))
    ledger.touch(conn, "c1")
    (early,) = deltas.customer_deltas(conn, "t1", 0, T0 + days(1))["customers"]
    assert (early["available"], early["pending"]) == (0, 100)
    (lot,) = early["lots"]
    assert balances.lot_from_wire(lot) == Lot(
        lot["key"], 100, T0 + days(15), T0 + days(45), active=False, receipt_id="r1")
    # No job has run: the delta is still right on day 20, and its lot says it is active.
    (later,) = deltas.customer_deltas(conn, "t1", 0, T0 + days(20))["customers"]
    assert (later["available"], later["pending"], later["lots"][0]["active"]) == (100, 0, True)
    (gone,) = deltas.customer_deltas(conn, "t1", 0, T0 + days(45))["customers"]
    assert (gone["available"], gone["lots"]) == (0, [])
