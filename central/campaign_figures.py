"""What each campaign gave: receipts touched, points granted, discount given, budget left.

A follower of the journal (the ingest sequence, central.ingest_log, like central.kpi_counts)
reads each sale's settlement as the till journalled it: the points each campaign put on
its lines and in receipt bonuses, and the discounts it took off. A receipt counts as
touched by a campaign that gave it anything. Returns are not subtracted: these are what
the campaign gave at the till (what returns took back shows in the ledger's clawbacks),
as budgets count them (central.campaign_budgets). Budget left is the newest rule set's
total for the campaign less what the budget accounting counted used.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from central import campaign_budgets, ingest_log
from central.db import Connection, transaction
from protocol.wire import InvalidMessage, unpack

CHUNK = 500


def count_pending(conn: Connection, limit: int = CHUNK) -> int:
    """Add the next `limit` journal entries to the figures; returns how many were looked at
    (0: nothing new, or another process counted them)."""
    start = conn.execute("SELECT ingest_seq FROM campaign_figures_accounting"
                         " WHERE name = 'journal'").fetchone()[0]
    page = ingest_log.entries_after(conn, start, limit, "j.kind, j.body")
    if page.upto == start:
        return 0
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in page.rows:
        if r["kind"] != "sale":
            continue
        try:
            settled = unpack(r["body"])["detail"]["settlement"]
            given = given_by(settled)
        except (InvalidMessage, KeyError, TypeError, ValueError, AttributeError):
            continue  # unreadable: re-pricing raises the alert for it
        for campaign_id, (points, discount) in given.items():
            s = sums[campaign_id]
            s[0] += 1
            s[1] += points
            s[2] += discount
    with transaction(conn):
        if not ingest_log.claim(conn, "campaign_figures_accounting", "journal", start,
                                page.upto):
            return 0
        conn.executemany(
            "INSERT INTO campaign_figures (campaign_id, receipts, points, discount)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (campaign_id) DO UPDATE SET"
            " receipts = campaign_figures.receipts + excluded.receipts,"
            " points = campaign_figures.points + excluded.points,"
            " discount = campaign_figures.discount + excluded.discount",
            [(k, *v) for k, v in sorted(sums.items())])
    return max(1, len(page.rows))


def given_by(settled: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per campaign, (points, discount) a journalled settlement says it gave."""
    points: dict[str, int] = defaultdict(int)
    discount: dict[str, int] = defaultdict(int)
    for line in settled.get("lines") or ():
        for e in line.get("earned") or ():
            if isinstance(e["points"], int):
                points[str(e["campaign"])] += e["points"]
        for d in line.get("discounts") or ():
            if isinstance(d["amount"], int):
                discount[str(d["campaign"])] += d["amount"]
    for b in settled.get("receipt_bonuses") or ():
        if isinstance(b["points"], int):
            points[str(b["campaign"])] += b["points"]
    return {c: (points.get(c, 0), discount.get(c, 0))
            for c in points.keys() | discount.keys() if points.get(c) or discount.get(c)}


def behind(conn: Connection) -> int:
    start = conn.execute("SELECT ingest_seq FROM campaign_figures_accounting"
                         " WHERE name = 'journal'").fetchone()[0]
    return ingest_log.entries_behind(conn, start)


def figures(conn: Connection, campaign_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT receipts, points, discount FROM campaign_figures"
                       " WHERE campaign_id = ?", (campaign_id,)).fetchone()
    receipts, points, discount = (row[0], row[1], row[2]) if row else (0, 0, 0)
    budget = campaign_budgets.budgets(conn).get(campaign_id)
    used_row = conn.execute("SELECT used FROM campaign_usage WHERE campaign_id = ?",
                            (campaign_id,)).fetchone()
    used = used_row[0] if used_row else 0
    total = budget.total if budget else None
    return {
        "campaign": campaign_id, "receipts": receipts, "points": points,
        "discount": discount,
        "budget": None if budget is None else {
            "total": total, "used": used,
            "left": None if total is None else max(0, total - used),
            "per_customer": budget.per_customer, "period": budget.period},
        "behind": behind(conn),  # journal entries not yet counted
    }
