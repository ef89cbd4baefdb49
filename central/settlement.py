"""Settling tills' journal entries in the ledger: earnings, spending, returns, overspend.

The ledger's rules live in central.ledger; this module says which ledger operations a
journal entry stands for. A batch's entries are taken customer by customer, each customer's
in journal order: customers' lots never mix, so the result is the one entry-by-entry
application would give, while each customer is looked up and marked changed once per batch.
Runs inside the ingest transaction.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from central import ledger, quarantine, returns, rulesets, tiers
from central.alerts import raise_alert
from central.clock import parse_iso
from central.db import Connection, Row
from protocol.journal import JournalEntry


def apply_entries(
    conn: Connection, till_id: str, entries: list[JournalEntry], now: datetime
) -> None:
    by_customer: dict[str, list[JournalEntry]] = defaultdict(list)
    for e in entries:
        if e.customer_id is not None:  # a non-member's receipt: journalled, no points
            by_customer[e.customer_id].append(e)
    if not by_customer:
        return
    # One read of every customer of the batch: whether they exist, and their tier window.
    rows = ledger.read_customers(conn, list(by_customer))
    spenders = [c for c, theirs in by_customer.items()
                if c in rows and any(e.redeemed for e in theirs)]
    book = ledger.BatchLedger(conn, now, spenders)
    tier_rules = rulesets.current_tiers(conn)
    counted: list[tuple] = []
    for customer_id, theirs in by_customer.items():
        row = rows.get(customer_id)
        if row is None:
            for e in theirs:
                raise_alert(
                    conn,
                    now,
                    "unknown-customer",
                    f"entry {e.seq} names a customer the central does not know",
                    till_id=till_id,
                )
            continue
        for e in theirs:
            _apply_entry(conn, book, till_id, e, now)
        counted.append((*_count_purchases(row, theirs, tier_rules), customer_id))
    book.flush()
    _update_customers(conn, counted)


def _count_purchases(row: Row, entries: list[JournalEntry],
                     tier_rules: dict | None) -> tuple[str | None, str | None, int, int]:
    """Purchases and tier-window spend, which conditions and tiers of the rules depend on.
    Spend is the money paid (returns take theirs back), dated by the till's receipt time.
    Returns (tier, window_start, window_spend, purchases to add)."""
    tier, start, spend = row["tier"], row["window_start"], row["window_spend"]
    for e in entries:
        amount = e.total if e.kind == "sale" else -e.total
        tier, start, spend = tiers.after_sale(tier_rules, tier, start, spend, amount,
                                              parse_iso(e.at))
    return tier, start, spend, sum(e.kind == "sale" for e in entries)


def _update_customers(conn: Connection, counted: list[tuple]) -> None:
    """Write the counters, and mark each customer changed: the mark is taken at the end of
    the ingest transaction (ledger.touch_many), so concurrent ingest does not queue on it."""
    if not counted:
        return
    conn.executemany(
        "UPDATE customers SET tier = ?, window_start = ?, window_spend = ?,"
        " purchases = purchases + ? WHERE id = ?", counted)
    ledger.touch_many(conn, [c[-1] for c in counted])


def _apply_entry(conn: Connection, book: ledger.BatchLedger, till_id: str,
                 e: JournalEntry, now: datetime) -> None:
    assert e.customer_id is not None
    src = ledger.Source(till_id=till_id, seq=e.seq, receipt_id=e.receipt_id)
    if e.redeemed:
        shortfall = book.redeem(e.customer_id, e.redeemed, src)
        if shortfall:
            raise_alert(
                conn,
                now,
                "offline-overspend",
                f"receipt spent {shortfall} points more than the balance held; recorded as debt",
                till_id=till_id,
                customer_id=e.customer_id,
            )
    if e.kind == "sale" and e.earned:
        # The till's lots are its claim: one provisional lot of their points, credited with
        # the rule set's dates only once re-priced (central.credits). Their dates are not
        # read at all.
        book.earn_provisional(e.customer_id, e.earned, src)
    if e.kind == "return" and e.original_receipt_id:
        allowed = returns.backed(conn, e)
        if allowed.problem:
            # Journalled as sent; only what the sale backs moves points. The till is
            # quarantined as for a sale that re-prices otherwise (central.repricing).
            raise_alert(conn, now, "return-beyond-sale", allowed.problem,
                        severity="critical", till_id=till_id, customer_id=e.customer_id)
            quarantine.quarantine(conn, till_id, allowed.problem, now)
        if allowed.refund:
            book.refund(e.customer_id, allowed.refund, e.original_receipt_id, src)
        if allowed.clawback:
            book.clawback(e.customer_id, allowed.clawback, e.original_receipt_id, src)
        returns.count_points(conn, e.original_receipt_id, allowed.refund, allowed.clawback)
