"""What a till reports about itself that head office should see: one alert per till, kind
and period, whose count grows, never one per event.

A till that refuses typed card numbers for its rate limit (someone guessing card numbers at
it) says so here, with how many it refused; the first report of a period writes the alert,
later ones add to its count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection

PERIOD = timedelta(minutes=10)
MAX_COUNT = 1_000_000  # a till reports what it refused since its last report

KINDS = {
    "typed-card-limit": ("typed card numbers refused at the till for its rate limit (someone"
                         " may be guessing card numbers)", "critical"),
}


def record(conn: Connection, now: datetime, till_id: str, kind: str, count: int,
           misses: int) -> int:
    """Add a till's report to this period's alert (or raise it); returns the alert's id."""
    what, severity = KINDS[kind]
    row = conn.execute(
        "SELECT id, count FROM alerts WHERE kind = ? AND till_id = ? AND at > ?"
        " AND acked_at IS NULL ORDER BY id DESC LIMIT 1",
        (kind, till_id, iso(now - PERIOD)),
    ).fetchone()
    if row is not None:
        total = row["count"] + count
        conn.execute("UPDATE alerts SET count = ?, last_at = ?, message = ? WHERE id = ?",
                     (total, iso(now), _message(what, total, misses), row["id"]))
        return int(row["id"])
    alert = raise_alert(conn, now, kind, _message(what, count, misses), severity=severity,
                        till_id=till_id)
    conn.execute("UPDATE alerts SET count = ? WHERE id = ?", (count, alert))
    return alert


def _message(what: str, count: int, misses: int) -> str:
    return f"{what}: {count} refused; {misses} unknown numbers before the last report"
