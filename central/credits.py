"""Points a till says a sale earned: provisional at ingest, credited only as re-priced.

Ingest must stay fast and decodes no receipt detail, so it cannot price; it records the
points a sale claims as one provisional lot (hold 'unverified') that counts as pending but
never activates. Re-pricing (central.repricing) then decides:

- the rules give what the till journalled: the provisional lot is replaced by the central's
  own lots, whose activation and expiry come from the rule set and the sale time the central
  accepted (never from the till); held (hold 'quarantine') while the till is quarantined;
- they do not: nothing is credited; the provisional points are withdrawn with an
  adjustment row, so the ledger still explains the balance entry by entry; and what the
  sale spent is given back (a refund row), so that a forged redemption leaves no debt.

A return's clawback may already have taken from the provisional lot (it takes from the
receipt's own lot first); what it took is taken from the central's lots in turn.
"""

from __future__ import annotations

from datetime import datetime

from central import ledger
from central.clock import iso
from central.db import Connection, Row
from protocol import rules

# Dates of a provisional lot: it must neither activate nor expire before re-pricing.
FAR = "9999-12-31T00:00:00+00:00"


def _provisional(conn: Connection, till_id: str, receipt_id: str) -> list[Row]:
    return conn.execute(
        "SELECT id, customer_id, points, remaining FROM lots"
        " WHERE till_id = ? AND receipt_id = ? AND hold = 'unverified'",
        (till_id, receipt_id),
    ).fetchall()


def confirm(conn: Connection, till_id: str, receipt_id: str, lots: list[rules.Lot],
            now: datetime, *, held: bool) -> None:
    """Replace the sale's provisional lot by `lots` (the central's, summing to the same)."""
    rows = _provisional(conn, till_id, receipt_id)
    if not rows:
        return
    customer_id = rows[0]["customer_id"]
    taken = sum(r["points"] - r["remaining"] for r in rows)
    conn.executemany("DELETE FROM lots WHERE id = ?", [(r["id"],) for r in rows])
    # What a clawback took comes off the lots that activate last, as a return in the window
    # cancels the newest points first.
    fresh = []
    for lot in sorted(lots, key=lambda lot: lot.activates_at, reverse=True):
        cut = min(taken, lot.points)
        taken -= cut
        fresh.append((customer_id, till_id, receipt_id, lot.points, lot.points - cut,
                      iso(lot.activates_at), iso(lot.expires_at) if lot.expires_at else FAR,
                      "quarantine" if held else None))
    conn.executemany(
        "INSERT INTO lots (customer_id, till_id, receipt_id, points, remaining, activates_at,"
        " expires_at, status, hold) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
        fresh,
    )
    if not held:
        ledger.mature(conn, customer_id, now)  # a lot whose return window has passed
    ledger.touch(conn, customer_id)


def give_back(conn: Connection, till_id: str, seq: int, receipt_id: str,
              customer_id: str, points: int, reason: str, now: datetime) -> None:
    """Undo what a sale the rules do not back spent: a till with a stolen key must not be
    able to leave customers in debt. The points go back where they came from (the lots the
    redemption took, else the debt it made), as a return's refund would."""
    if points <= 0:
        return
    ledger.refund(conn, customer_id, points, receipt_id, now, ledger.Source(
        till_id=till_id, seq=seq, receipt_id=receipt_id, actor="central",
        reason=f"not debited: {reason}"[:500]))
    ledger.touch(conn, customer_id)


def withhold(conn: Connection, till_id: str, seq: int, receipt_id: str,
             reason: str, now: datetime) -> int:
    """Credit nothing for this sale: withdraw its provisional points; returns how many."""
    rows = _provisional(conn, till_id, receipt_id)
    if not rows:
        return 0
    customer_id = rows[0]["customer_id"]
    points = sum(r["remaining"] for r in rows)
    conn.executemany(
        "UPDATE lots SET remaining = 0, status = 'expired', hold = 'refused' WHERE id = ?",
        [(r["id"],) for r in rows],
    )
    ledger.withdraw(conn, customer_id, points, now, ledger.Source(
        till_id=till_id, seq=seq, receipt_id=receipt_id, actor="central",
        reason=f"not credited: {reason}"[:500]))
    ledger.touch(conn, customer_id)
    return points
