"""Alerts for head office: security events, offline overspend, mismatches.

Head office pages through them newest first (`before` an id), filters them by kind,
severity, till, source and whether someone has acknowledged them, and acknowledges them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from central.clock import iso
from central.db import Connection

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
MAX_PAGE = 500


def raise_alert(
    conn: Connection,
    now: datetime,
    kind: str,
    message: str,
    *,
    severity: str = "warning",
    till_id: str | None = None,
    customer_id: str | None = None,
    source: str | None = None,
) -> int:
    """Record an alert; callers outside a transaction get it committed at once."""
    log.warning("alert %s (%s): %s", kind, severity, message)
    row = conn.execute(
        "INSERT INTO alerts (at, kind, severity, till_id, customer_id, message, source, last_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (iso(now), kind, severity, till_id, customer_id, message, source, iso(now)),
    ).fetchone()
    return int(row[0])


def raise_or_count(conn: Connection, now: datetime, kind: str, message: str, *,
                   till_id: str, period: timedelta, severity: str = "critical") -> None:
    """One alert per till, kind and period: a repeat counts on the open one (`count`,
    `last_at`, the newest message), so a till sending the same bad thing again and again
    does not bury other alerts."""
    row = conn.execute(
        "SELECT id FROM alerts WHERE kind = ? AND till_id = ? AND at > ? AND acked_at IS NULL"
        " ORDER BY id DESC LIMIT 1", (kind, till_id, iso(now - period))).fetchone()
    if row is None:
        raise_alert(conn, now, kind, message, severity=severity, till_id=till_id)
        return
    log.warning("alert %s (%s, repeated): %s", kind, severity, message)
    conn.execute("UPDATE alerts SET count = count + 1, last_at = ?, message = ? WHERE id = ?",
                 (iso(now), message, row[0]))


@dataclass(frozen=True)
class AlertQuery:
    kind: str | None = None
    severity: str | None = None
    till_id: str | None = None
    source: str | None = None
    acked: bool | None = None  # None: both
    before: int | None = None  # an alert id: the page starts below it
    limit: int = 100


def list_alerts(conn: Connection, query: AlertQuery = AlertQuery()) -> dict:
    """One page, newest first, and the `before` that gives the next page (None at the end)."""
    where, params = ["1 = 1"], []
    for column in ("kind", "severity", "till_id", "source"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.acked is not None:
        where.append("acked_at IS NOT NULL" if query.acked else "acked_at IS NULL")
    if query.before is not None:
        where.append("id < ?")
        params.append(query.before)
    limit = max(1, min(query.limit, MAX_PAGE))
    rows = conn.execute(
        f"SELECT * FROM alerts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    page = [dict(r) for r in rows[:limit]]
    return {"alerts": page, "next_before": page[-1]["id"] if len(rows) > limit else None}


def acknowledge(conn: Connection, alert_id: int, actor: str,
                now: datetime) -> dict | None:
    """Mark an alert seen by `actor`; acknowledging it again keeps the first. None if unknown."""
    conn.execute(
        "UPDATE alerts SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL",
        (iso(now), actor, alert_id),
    )
    row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return dict(row) if row else None
