"""Manual adjustments that wait for a second person (four eyes).

A manual adjustment of more points than the programme's threshold (either way: a large
debit can hurt as much as a large credit) is not applied: it is stored as pending, and
applied only when a different staff member whose role may approve (central.roles.APPROVERS)
approves it, or dropped when one rejects it. The ledger's `actor` is the person who asked;
the approval row and the audit log name who approved. The balance bound is judged when the
adjustment is applied, against the balance of that moment.

The threshold is the programme's `approval_above` (points; None: never wait), DEFAULT until
an admin sets it. The data directory's shared admin token is one account: people who share
it count as one person here, which is one more reason to give each a token of their own.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from central import customers
from central.clock import iso
from central.db import Connection, Row, transaction
from central.errors import Refused
from protocol import bounds

DEFAULT_APPROVAL_ABOVE = 10_000
STATUSES = ("pending", "approved", "rejected")
THRESHOLD = bounds.IntRange(0, bounds.MAX_POINTS, "approval_above")
MAX_PAGE = 500


def approval_above(conn: Connection) -> int | None:
    row = conn.execute("SELECT approval_above FROM adjustment_policy WHERE id = 1").fetchone()
    return DEFAULT_APPROVAL_ABOVE if row is None else row["approval_above"]


def set_approval_above(conn: Connection, value: int | None, actor: str, now: datetime) -> None:
    if value is not None:
        THRESHOLD.check(value, "approval_above")
    conn.execute(
        "INSERT INTO adjustment_policy (id, approval_above, updated_at, actor)"
        " VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " approval_above = excluded.approval_above, updated_at = excluded.updated_at,"
        " actor = excluded.actor", (value, iso(now), actor))


def needs_approval(conn: Connection, points: int) -> bool:
    limit = approval_above(conn)
    return limit is not None and abs(points) > limit


def request(conn: Connection, customer_id: str, points: int, reason: str, requested_by: str,
            now: datetime) -> dict[str, Any]:
    """Store an adjustment that waits for approval; checked as far as it can be now."""
    bounds.ADJUSTMENT.check(points, "points")
    bounds.text(reason, "reason", required=True)
    if points == 0:
        raise Refused(400, "an adjustment of 0 points changes nothing")
    # Time-ordered, so the queue lists and pages by id alone.
    approval_id = f"ap_{int(now.timestamp() * 1000):012x}{secrets.token_hex(5)}"
    with transaction(conn):
        customers.read(conn, customer_id)  # 404 for no such customer
        conn.execute(
            "INSERT INTO adjustment_approvals (id, customer_id, points, reason, requested_by,"
            " requested_at, status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
            (approval_id, customer_id, points, reason, requested_by, iso(now)))
    return get(conn, approval_id)


def get(conn: Connection, approval_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM adjustment_approvals WHERE id = ?",
                       (approval_id[:64],)).fetchone()
    if row is None:
        raise Refused(404, "no such approval")
    return _approval(row)


def _approval(r: Row) -> dict[str, Any]:
    return {k: r[k] for k in ("id", "customer_id", "points", "reason", "requested_by",
                              "requested_at", "status", "decided_by", "decided_at", "note")}


def _claim(conn: Connection, approval_id: str) -> dict[str, Any]:
    """The pending approval, locked until the transaction ends (two approvers at once: one
    applies it, the other gets 409)."""
    row = conn.execute("SELECT * FROM adjustment_approvals WHERE id = ?"
                       + conn.dialect.for_update, (approval_id[:64],)).fetchone()
    if row is None:
        raise Refused(404, "no such approval")
    found = _approval(row)
    if found["status"] != "pending":
        raise Refused(409, f"approval {approval_id} is {found['status']} already")
    return found


def approve(conn: Connection, approval_id: str, by: str, now: datetime) -> dict[str, Any]:
    """Apply the adjustment, as the person who asked for it; `by` must be someone else."""
    with transaction(conn):
        found = _claim(conn, approval_id)
        if found["requested_by"] == by:
            raise Refused(403, "a second person must approve: you asked for this adjustment")
        result = customers.adjust(conn, found["customer_id"], found["points"],
                                  found["requested_by"], found["reason"], now)
        _decide(conn, approval_id, "approved", by, now, None)
    return {**get(conn, approval_id), "customer": result}


def reject(conn: Connection, approval_id: str, by: str, note: str | None,
           now: datetime) -> dict[str, Any]:
    if note is not None:
        bounds.text(note, "note")
    with transaction(conn):
        _claim(conn, approval_id)
        _decide(conn, approval_id, "rejected", by, now, note)
    return get(conn, approval_id)


def _decide(conn: Connection, approval_id: str, status: str, by: str, now: datetime,
            note: str | None) -> None:
    conn.execute("UPDATE adjustment_approvals SET status = ?, decided_by = ?, decided_at = ?,"
                 " note = ? WHERE id = ? AND status = 'pending'",
                 (status, by, iso(now), note, approval_id))


def list_approvals(conn: Connection, status: str | None, after: str | None,
                   limit: int) -> dict[str, Any]:
    """Oldest request first (the queue's order); `next_after` pages on."""
    where, params = [], []
    if status is not None:
        if status not in STATUSES:
            raise Refused(400, f"field 'status' must be one of {', '.join(STATUSES)}")
        where.append("status = ?")
        params.append(status)
    if after is not None:
        where.append("id > ?")
        params.append(after)
    limit = max(1, min(limit, MAX_PAGE))
    rows = [_approval(r) for r in conn.execute(
        "SELECT * FROM adjustment_approvals" + (" WHERE " + " AND ".join(where) if where
                                                else "") + " ORDER BY id LIMIT ?",
        (*params, limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"approvals": rows, "next_after": rows[-1]["id"] if more else None}
