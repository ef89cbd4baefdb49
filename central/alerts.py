"""Alerts for head office: security events, offline overspend, mismatches."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime

from central.clock import iso

log = logging.getLogger(__name__)


def raise_alert(
    conn: sqlite3.Connection,
    now: datetime,
    kind: str,
    message: str,
    *,
    severity: str = "warning",
    till_id: str | None = None,
    customer_id: str | None = None,
) -> None:
    """Record an alert; callers outside a transaction get it committed at once."""
    log.warning("alert %s (%s): %s", kind, severity, message)
    conn.execute(
        "INSERT INTO alerts (at, kind, severity, till_id, customer_id, message)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (iso(now), kind, severity, till_id, customer_id, message),
    )


def list_alerts(conn: sqlite3.Connection, limit: int = 100) -> list[dict]:
    rows = conn.execute("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [dict(r) for r in rows]
