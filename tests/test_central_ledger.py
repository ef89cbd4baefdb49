"""The points ledger: lots, spending order, debts, returns; and its invariant under any story."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import db, ledger
from central.clock import iso
from tests.databases import KINDS, fresh_database

T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(database):
    c = db.connect(database)
    yield c
    c.close()


def customer(conn, cid: str = "c1") -> str:
    conn.execute("INSERT INTO customers (id, created_at) VALUES (?, ?)", (cid, iso(T0)))
    return cid


def src(receipt: str, till: str = "t1") -> ledger.Source:
    return ledger.Source(till_id=till, receipt_id=receipt)


def test_earned_points_wait_out_the_return_window_then_expire(conn):
    cid = customer(conn)
    ledger.earn(conn, cid, 100, T0 + timedelta(days=14), T0 + timedelta(days=379), T0, src("r1"))
    assert ledger.balance(conn, cid) == ledger.Balance(available=0, pending=100, debt=0)
    ledger.mature(conn, cid, T0 + timedelta(days=14))
    assert ledger.balance(conn, cid) == ledger.Balance(available=100, pending=0, debt=0)
    ledger.mature(conn, cid, T0 + timedelta(days=379))
    assert ledger.balance(conn, cid) == ledger.Balance(available=0, pending=0, debt=0)
    kinds = [h["kind"] for h in reversed(ledger.history(conn, cid))]
    assert kinds == ["earn", "activate", "expire"]


def test_spending_takes_the_soonest_expiring_points_first(conn):
    cid = customer(conn)
    ledger.earn(conn, cid, 100, T0, T0 + timedelta(days=300), T0, src("late"))
    ledger.earn(conn, cid, 100, T0, T0 + timedelta(days=30), T0, src("soon"))
    ledger.redeem(conn, cid, 120, T0, src("spend"))
    ledger.mature(conn, cid, T0 + timedelta(days=30))  # the soon lot was used up
    assert ledger.balance(conn, cid).available == 80


def test_overspend_is_debt_and_later_activations_pay_it(conn):
    cid = customer(conn)
    ledger.earn(conn, cid, 50, T0, T0 + timedelta(days=365), T0, src("a"))
    assert ledger.redeem(conn, cid, 80, T0, src("b")) == 30
    assert ledger.balance(conn, cid) == ledger.Balance(available=-30, pending=0, debt=30)
    ledger.earn(conn, cid, 100, T0 + timedelta(days=14), T0 + timedelta(days=400), T0, src("c"))
    ledger.mature(conn, cid, T0 + timedelta(days=14))
    assert ledger.balance(conn, cid) == ledger.Balance(available=70, pending=0, debt=0)


def test_return_takes_back_from_the_receipts_own_lot_and_refunds_into_the_spent_lots(conn):
    cid = customer(conn)
    ledger.earn(conn, cid, 200, T0, T0 + timedelta(days=100), T0, src("bonus"))
    ledger.redeem(conn, cid, 150, T0, src("sale"))
    ledger.earn(conn, cid, 40, T0 + timedelta(days=14), T0 + timedelta(days=379), T0,
                src("sale"))
    ledger.clawback(conn, cid, 40, "sale", T0, src("ret"))
    ledger.refund(conn, cid, 150, "sale", T0, src("ret"))
    assert ledger.balance(conn, cid) == ledger.Balance(available=200, pending=0, debt=0)
    # The refunded points went back into the bonus lot: they expire with it.
    ledger.mature(conn, cid, T0 + timedelta(days=100))
    assert ledger.balance(conn, cid).available == 0


def test_a_return_at_another_till_finds_the_sales_own_lots_and_keeps_their_expiry(conn):
    cid = customer(conn)
    ledger.earn(conn, cid, 200, T0, T0 + timedelta(days=30), T0, src("bonus", "t1"))
    ledger.redeem(conn, cid, 150, T0, src("sale", "t1"))
    ledger.earn(conn, cid, 40, T0 + timedelta(days=14), T0 + timedelta(days=379), T0,
                src("sale", "t1"))
    ledger.earn(conn, cid, 500, T0, T0 + timedelta(days=365), T0, src("other", "t1"))
    # Brought back to till t2 on day 5: the sale's pending lot pays the clawback (the
    # customer's 500 active points stay whole), the points spent go back into the bonus lot.
    day5 = T0 + timedelta(days=5)
    assert ledger.clawback(conn, cid, 40, "sale", day5, src("ret", "t2")) == 0
    ledger.refund(conn, cid, 150, "sale", day5, src("ret", "t2"))
    assert ledger.balance(conn, cid) == ledger.Balance(available=700, pending=0, debt=0)
    # Buy and return did not lengthen the points' life: they expire with the bonus lot.
    ledger.mature(conn, cid, T0 + timedelta(days=30))
    assert ledger.balance(conn, cid).available == 500
    assert conn.execute("SELECT COUNT(*) FROM lots").fetchone()[0] == 3


def test_points_refunded_after_their_debt_was_paid_never_outlive_the_lot_that_paid(conn):
    cid = customer(conn)
    assert ledger.redeem(conn, cid, 100, T0, src("offline-sale")) == 100  # overspent
    ledger.earn(conn, cid, 100, T0, T0 + timedelta(days=60), T0, src("later"))  # pays debt
    assert ledger.balance(conn, cid) == ledger.Balance(available=0, pending=0, debt=0)
    ledger.refund(conn, cid, 100, "offline-sale", T0 + timedelta(days=1), src("ret", "t2"))
    assert ledger.balance(conn, cid).available == 100
    ledger.mature(conn, cid, T0 + timedelta(days=60))
    assert ledger.balance(conn, cid).available == 0


def test_clawback_beyond_the_balance_is_recorded_as_debt(conn):
    cid = customer(conn)
    ledger.earn(conn, cid, 60, T0, T0 + timedelta(days=365), T0, src("sale"))
    ledger.redeem(conn, cid, 60, T0, src("spent-elsewhere"))
    assert ledger.clawback(conn, cid, 60, "sale", T0, src("ret")) == 60
    assert ledger.balance(conn, cid) == ledger.Balance(available=-60, pending=0, debt=60)


# -- the invariant -------------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["earn", "redeem", "clawback", "refund", "age"]),
        st.integers(min_value=1, max_value=500),
        st.integers(min_value=0, max_value=4),  # which receipt
        st.integers(min_value=0, max_value=40),  # days
    ),
    max_size=40,
)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_balance_always_equals_the_sum_of_ledger_movements(tmp_path_factory, kind, ops):
    with fresh_database(kind, tmp_path_factory.mktemp("prop")) as target:
        _balance_story(db.connect(target), ops)


def _balance_story(conn: db.Connection, ops: list) -> None:
    cid = customer(conn)
    now = T0
    earned = dict.fromkeys(range(5), 0)
    spent = dict.fromkeys(range(5), 0)
    try:
        for op, points, receipt, days in ops:
            r = f"r{receipt}"
            if op == "age":
                now += timedelta(days=days)
                ledger.mature(conn, cid, now)
            elif op == "earn":
                ledger.earn(conn, cid, points, now + timedelta(days=days % 15),
                            now + timedelta(days=30 + days), now, src(r))
                earned[receipt] += points
            elif op == "redeem":
                ledger.redeem(conn, cid, points, now, src(r))
                spent[receipt] += points
            elif op == "clawback" and earned[receipt]:
                back = min(points, earned[receipt])
                ledger.clawback(conn, cid, back, r, now, src("ret"))
                earned[receipt] -= back
            elif op == "refund" and spent[receipt]:
                back = min(points, spent[receipt])
                ledger.refund(conn, cid, back, r, now, src("ret"))
                spent[receipt] -= back
            bal = ledger.balance(conn, cid)
            assert bal.available + bal.pending == ledger.movement_total(conn, cid)
            assert bal.debt >= 0 and bal.pending >= 0
            negative = conn.execute("SELECT COUNT(*) FROM lots WHERE remaining < 0").fetchone()
            assert negative[0] == 0
    finally:
        conn.close()


# -- a batch's grouped writes -----------------------------------------------------------------

batch_operations = st.lists(
    st.tuples(
        st.sampled_from(["earn", "earn-now", "redeem", "clawback", "refund"]),
        st.integers(min_value=0, max_value=1),  # which customer
        st.integers(min_value=1, max_value=300),
        st.integers(min_value=0, max_value=3),  # which receipt
    ),
    max_size=30,
)


def _story(conn) -> list:
    """Each customer's lots and ledger rows in their order, and debts: what a batch leaves."""
    out = []
    for cid in ("c0", "c1"):
        out.append(conn.execute(
            "SELECT till_id, receipt_id, points, remaining, activates_at, expires_at, status"
            " FROM lots WHERE customer_id = ? ORDER BY id", (cid,)).fetchall())
        out.append(conn.execute(
            "SELECT kind, points, at, till_id, seq, receipt_id FROM ledger WHERE customer_id = ?"
            " ORDER BY id", (cid,)).fetchall())
        out.append(conn.execute("SELECT debt FROM customers WHERE id = ?", (cid,)).fetchall())
    return [[tuple(r) for r in rows] for rows in out]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(ops=batch_operations, due=st.sampled_from(["nothing", "activation", "debt"]))
def test_a_batch_ledger_leaves_what_one_operation_at_a_time_leaves(tmp_path_factory, kind, ops,
                                                                   due):
    """BatchLedger groups pending earnings and skips needless maturing: nothing else."""
    base = tmp_path_factory.mktemp("batch")
    with fresh_database(kind, base) as one, fresh_database(kind, base) as batch:
        _compare_batch(db.connect(one), db.connect(batch), ops, due)


def _compare_batch(one: db.Connection, batch: db.Connection, ops: list, due: str) -> None:
    conns = [one, batch]
    try:
        for conn in conns:
            for cid in ("c0", "c1"):
                customer(conn, cid)
                ledger.earn(conn, cid, 200, T0 - timedelta(days=20), T0 + timedelta(days=5),
                            T0 - timedelta(days=20), src("welcome"))
                ledger.earn(conn, cid, 50, T0 + timedelta(days=1), T0 + timedelta(days=90),
                            T0 - timedelta(days=13), src("older"))
            # What mature() has to do when the batch begins, for one customer.
            if due == "activation":
                ledger.earn(conn, "c1", 70, T0 - timedelta(days=1), T0 + timedelta(days=90),
                            T0 - timedelta(days=15), src("due"))
            elif due == "debt":
                ledger.redeem(conn, "c1", 900, T0 - timedelta(days=15), src("old"))
        plain, grouped = conns
        spenders = sorted({f"c{who}" for op, who, _, _ in ops if op == "redeem"})
        book = ledger.BatchLedger(grouped, T0, spenders)
        for n, (op, who, points, receipt) in enumerate(ops):
            cid, r = f"c{who}", f"r{receipt}"
            s = ledger.Source(till_id="t1", seq=n + 1, receipt_id=r)
            if op in ("earn", "earn-now"):
                starts = T0 if op == "earn-now" else T0 + timedelta(days=14)
                ends = T0 + timedelta(days=200 + receipt)
                ledger.earn(plain, cid, points, starts, ends, T0, s)
                book.earn(cid, points, iso(starts), iso(ends), s)
            elif op == "redeem":
                assert ledger.redeem(plain, cid, points, T0, s) == book.redeem(cid, points, s)
            elif op == "clawback":
                assert (ledger.clawback(plain, cid, points, r, T0, s)
                        == book.clawback(cid, points, r, s))
            else:
                ledger.refund(plain, cid, points, r, T0, s)
                book.refund(cid, points, r, s)
        book.flush()
        assert _story(plain) == _story(grouped)
    finally:
        for conn in conns:
            conn.close()
