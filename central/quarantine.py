"""Quarantine of a till whose entries the central's re-pricing does not confirm.

A till that journals a sale the rules do not give (more points, a profile or rule set it
was never sent) has a bug or a stolen key; either way its word is no longer taken. It keeps
selling and syncing (its receipts are real fiscal documents and are journalled), but
the points its sales earn are held, not credited, and it is sent redemption caps of 0, until
head office has looked at it and releases it. Release credits what was held for entries
that re-priced as journalled; entries that did not stay uncredited.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from central import ledger
from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection, transaction
from central.offline_caps import OfflineCaps


def quarantine(conn: Connection, till_id: str, reason: str, now: datetime) -> bool:
    """Quarantine the till (inside the caller's transaction); False if it already was."""
    cur = conn.execute(
        "UPDATE tills SET quarantined_at = ?, quarantine_reason = ?"
        " WHERE id = ? AND quarantined_at IS NULL",
        (iso(now), reason[:500], till_id),
    )
    if cur.rowcount != 1:
        return False
    raise_alert(conn, now, "till-quarantined",
                f"till quarantined until head office releases it: {reason}",
                severity="critical", till_id=till_id)
    return True


def state(conn: Connection, till_id: str) -> dict[str, str] | None:
    """{"since", "reason"} of a quarantined till, None for one that is not."""
    row = conn.execute("SELECT quarantined_at, quarantine_reason FROM tills WHERE id = ?",
                       (till_id,)).fetchone()
    if row is None or row["quarantined_at"] is None:
        return None
    return {"since": row["quarantined_at"], "reason": row["quarantine_reason"]}


def is_quarantined(conn: Connection, till_id: str) -> bool:
    return state(conn, till_id) is not None


def caps_for(caps: OfflineCaps, quarantined: bool) -> OfflineCaps:
    """The caps a till is sent: a quarantined till may not let anyone spend points."""
    if not quarantined:
        return caps
    return replace(caps, redeem_per_receipt=0, redeem_per_card_day=0, till_outstanding=0)


def release(conn: Connection, till_id: str, actor: str, now: datetime) -> dict | None:
    """Lift the quarantine and credit the held points of confirmed entries; None if the till
    is unknown. Runs in its own transaction."""
    with transaction(conn):
        row = conn.execute("SELECT quarantined_at, quarantine_reason FROM tills WHERE id = ?",
                           (till_id,)).fetchone()
        if row is None:
            return None
        held = conn.execute(
            "SELECT customer_id, COALESCE(SUM(remaining), 0) AS points FROM lots"
            " WHERE till_id = ? AND hold = 'quarantine' GROUP BY customer_id",
            (till_id,),
        ).fetchall()
        ledger.lock_customers(conn, [r["customer_id"] for r in held])
        conn.execute("UPDATE lots SET hold = NULL WHERE till_id = ? AND hold = 'quarantine'",
                     (till_id,))
        for r in held:
            ledger.mature(conn, r["customer_id"], now)  # those already due activate now
        ledger.touch_many(conn, [r["customer_id"] for r in held])
        released = sum(r["points"] for r in held)
        if row["quarantined_at"] is not None:
            conn.execute("UPDATE tills SET quarantined_at = NULL, quarantine_reason = NULL"
                         " WHERE id = ?", (till_id,))
            raise_alert(conn, now, "till-released",
                        f"{actor} released the till from quarantine"
                        f" ({row['quarantine_reason']}); {released} held points credited",
                        severity="info", till_id=till_id)
    return {"id": till_id, "quarantine": None, "released_points": released}
