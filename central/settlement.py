"""Settling tills' journal entries in the ledger: earnings, spending, returns, overspend.

The ledger's rules live in central.ledger; this module says which ledger operations a
journal entry stands for. A batch's entries are taken customer by customer, each customer's
in journal order: customers' lots never mix, so the result is the one entry-by-entry
application would give, while each customer is looked up and marked changed once per batch.
Runs inside the ingest transaction.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from datetime import datetime

from central import ledger, rulesets, tiers
from central.alerts import raise_alert
from central.clock import parse_iso
from protocol.journal import JournalEntry


def apply_entries(
    conn: sqlite3.Connection, till_id: str, entries: list[JournalEntry], now: datetime
) -> None:
    by_customer: dict[str, list[JournalEntry]] = defaultdict(list)
    for e in entries:
        if e.customer_id is not None:  # a non-member's receipt: journalled, no points
            by_customer[e.customer_id].append(e)
    if not by_customer:
        return
    known = ledger.existing_customers(conn, list(by_customer))
    tier_rules = rulesets.current_tiers(conn)
    for customer_id, theirs in by_customer.items():
        if customer_id not in known:
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
            _apply_entry(conn, till_id, e, now)
        _count_purchases(conn, customer_id, theirs, tier_rules)
    ledger.touch_many(conn, [c for c in by_customer if c in known])


def _count_purchases(conn: sqlite3.Connection, customer_id: str, entries: list[JournalEntry],
                     tier_rules: dict | None) -> None:
    """Purchases and tier-window spend, which conditions and tiers of the rules depend on.
    Spend is the money paid (returns take theirs back), dated by the till's receipt time."""
    row = conn.execute("SELECT tier, window_start, window_spend FROM customers WHERE id = ?",
                       (customer_id,)).fetchone()
    tier, start, spend = row["tier"], row["window_start"], row["window_spend"]
    for e in entries:
        amount = e.total if e.kind == "sale" else -e.total
        tier, start, spend = tiers.after_sale(tier_rules, tier, start, spend, amount,
                                              parse_iso(e.at))
    conn.execute(
        "UPDATE customers SET tier = ?, window_start = ?, window_spend = ?,"
        " purchases = purchases + ? WHERE id = ?",
        (tier, start, spend, sum(e.kind == "sale" for e in entries), customer_id),
    )


def _apply_entry(conn: sqlite3.Connection, till_id: str, e: JournalEntry, now: datetime) -> None:
    assert e.customer_id is not None
    src = ledger.Source(till_id=till_id, seq=e.seq, receipt_id=e.receipt_id)
    if e.redeemed:
        shortfall = ledger.redeem(conn, e.customer_id, e.redeemed, now, src)
        if shortfall:
            raise_alert(
                conn,
                now,
                "offline-overspend",
                f"receipt spent {shortfall} points more than the balance held; recorded as debt",
                till_id=till_id,
                customer_id=e.customer_id,
            )
    for lot in e.lots:
        ledger.earn(
            conn,
            e.customer_id,
            lot["points"],
            parse_iso(lot["activates"]),
            parse_iso(lot["expires"]),
            now,
            src,
        )
    if e.kind == "return" and e.original_receipt_id:
        if e.refund:
            ledger.refund(conn, e.customer_id, e.refund, e.original_receipt_id, now, src)
        if e.clawback:
            ledger.clawback(conn, e.customer_id, e.clawback, e.original_receipt_id, now, src)
