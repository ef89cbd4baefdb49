"""Points held by a fraud hit until a person releases or confirms the hold.

A hold uses the mechanism the ledger already has for points that must not be spent yet
(central.credits: not yet re-priced, or a quarantined till's): the customer's live lots are
marked `hold = 'fraud'` and counted as pending. Every reader replays a held lot as
activating at the end of time (central.ledger._state, states_at), so:

- the balance head office reads and the one tills receive with their deltas show the held
  points as pending, not available: a till does not let them be spent, online or off;
- ingest's redemptions take only active lots, so a redemption a till let through before it
  heard of the hold becomes debt, as any offline overspend does;
- a held lot neither activates nor expires while held; on release it gets back the status
  it had and the clock is replayed, so a hold never lengthens points' life.

A hold moves no points: the ledger's invariant (movements == available + pending) holds
throughout, and the ledger gets a row only when a person confirms the hold, which withdraws
the held points with an `adjust` row naming them and the hit.
"""

from __future__ import annotations

from datetime import datetime

from central import ledger
from central.db import Connection

HOLD = "fraud"
CONFIRMED = "fraud-confirmed"


def hold(conn: Connection, hit_id: int, customer_id: str, now: datetime) -> int:
    """Hold the customer's live lots not held already (inside the caller's transaction,
    the customer locked); returns how many points that holds."""
    ledger.mature(conn, customer_id, now)  # the statuses as they stand now
    lots = conn.execute(
        "SELECT id, status, remaining FROM lots WHERE customer_id = ? AND hold IS NULL"
        " AND status IN ('pending', 'active') AND remaining > 0", (customer_id,)).fetchall()
    if not lots:
        return 0
    conn.executemany("INSERT INTO fraud_hold_lots (hit_id, lot_id, status, points)"
                     " VALUES (?, ?, ?, ?)",
                     [(hit_id, r["id"], r["status"], r["remaining"]) for r in lots])
    conn.executemany("UPDATE lots SET status = 'pending', hold = ? WHERE id = ?",
                     [(HOLD, r["id"]) for r in lots])
    ledger.touch(conn, customer_id)
    return sum(r["remaining"] for r in lots)


def _held(conn: Connection, hit_id: int) -> list:
    return conn.execute(
        "SELECT h.lot_id, h.status, l.remaining FROM fraud_hold_lots h"
        " JOIN lots l ON l.id = h.lot_id WHERE h.hit_id = ? AND l.hold = ?",
        (hit_id, HOLD)).fetchall()


def release(conn: Connection, hit_id: int, customer_id: str, now: datetime) -> int:
    """Give the held lots back their status and replay the clock; returns the points
    released (what is left of them: a return may have clawed some back meanwhile)."""
    lots = _held(conn, hit_id)
    conn.executemany("UPDATE lots SET status = ?, hold = NULL WHERE id = ?",
                     [(r["status"], r["lot_id"]) for r in lots])
    ledger.mature(conn, customer_id, now)
    ledger.touch(conn, customer_id)
    return sum(r["remaining"] for r in lots)


def confirm(conn: Connection, hit_id: int, customer_id: str, actor: str, reason: str,
            now: datetime) -> int:
    """Withdraw the held points for good (a person's decision), with a ledger row; returns
    how many."""
    lots = _held(conn, hit_id)
    points = sum(r["remaining"] for r in lots)
    conn.executemany("UPDATE lots SET remaining = 0, status = 'expired', hold = ? WHERE id = ?",
                     [(CONFIRMED, r["lot_id"]) for r in lots])
    ledger.withdraw(conn, customer_id, points, now, ledger.Source(
        actor=actor, reason=f"fraud hit {hit_id} confirmed: {reason}"[:500]))
    ledger.touch(conn, customer_id)
    return points
