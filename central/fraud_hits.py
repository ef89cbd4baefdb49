"""Hits of the fraud rules: each an alert with its evidence, reviewed by a person.

A hit is recorded once per rule and `dedup` key (what makes two hits the same episode: the
customer and the accrual they spent, the cashier and the day...), raises an alert of kind
`fraud` (source: the rule) and, where its rule says so, holds the customer's points
(central.fraud_holds). People then:

- review it: `confirmed` or `false-positive`, with a note. A false positive is kept as
  such, with who said so; it changes no threshold (only a PUT of the rules does, audited);
- release or confirm its hold. Blocking a card or a customer, or escalating to security,
  are their decisions, made elsewhere: no rule decides about a person on its own (152-FZ).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from central import fraud_holds, ledger
from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection, Row, transaction
from central.errors import Refused

VERDICTS = ("confirmed", "false-positive")
HOLD_ACTIONS = ("release", "confirm")
MAX_PAGE = 500


def record(conn: Connection, now: datetime, rule: str, dedup: str, subject: str,
           message: str, evidence: dict[str, Any], *, customer_id: str | None = None,
           till_id: str | None = None) -> int | None:
    """Record a hit and raise its alert (inside the caller's transaction); None if this
    rule has already hit for `dedup`."""
    row = conn.execute(
        "INSERT INTO fraud_hits (at, rule, dedup, subject, customer_id, till_id, message,"
        " evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule, dedup) DO NOTHING"
        " RETURNING id",
        (iso(now), rule, dedup[:500], subject[:500], customer_id, till_id, message[:1000],
         json.dumps(evidence, sort_keys=True))).fetchone()
    if row is None:
        return None
    hit_id = int(row[0])
    alert = raise_alert(conn, now, "fraud", f"fraud hit {hit_id}, rule {rule}: {message}",
                        till_id=till_id, customer_id=customer_id, source=rule)
    conn.execute("UPDATE fraud_hits SET alert_id = ? WHERE id = ?", (alert, hit_id))
    return hit_id


def hold(conn: Connection, hit_id: int, customer_id: str, now: datetime) -> int:
    """Hold the customer's points for this hit (the customer locked by the caller)."""
    points = fraud_holds.hold(conn, hit_id, customer_id, now)
    if points:
        conn.execute("UPDATE fraud_hits SET held_points = ?, hold_status = 'held',"
                     " hold_by = 'rule', hold_at = ? WHERE id = ?", (points, iso(now), hit_id))
    return points


def to_dict(r: Row) -> dict[str, Any]:
    d = dict(r)
    d["evidence"] = json.loads(d["evidence"])
    return d


def get(conn: Connection, hit_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM fraud_hits WHERE id = ?", (hit_id,)).fetchone()
    if row is None:
        raise Refused(404, f"no fraud hit {hit_id}")
    return to_dict(row)


def list_hits(conn: Connection, *, rule: str | None = None, verdict: str | None = None,
              before: int | None = None, limit: int = 100) -> dict[str, Any]:
    """A page of hits, newest first; `verdict` 'none' for those nobody has reviewed."""
    where, params = ["1 = 1"], []
    if rule is not None:
        where.append("rule = ?")
        params.append(rule)
    if verdict == "none":
        where.append("verdict IS NULL")
    elif verdict is not None:
        where.append("verdict = ?")
        params.append(verdict)
    if before is not None:
        where.append("id < ?")
        params.append(before)
    limit = max(1, min(limit, MAX_PAGE))
    rows = conn.execute(f"SELECT * FROM fraud_hits WHERE {' AND '.join(where)}"
                        " ORDER BY id DESC LIMIT ?", (*params, limit + 1)).fetchall()
    page = [to_dict(r) for r in rows[:limit]]
    return {"hits": page, "next_before": page[-1]["id"] if len(rows) > limit else None}


def review(conn: Connection, hit_id: int, verdict: str, note: str, actor: str,
           now: datetime) -> dict[str, Any]:
    """A person's verdict on a hit; a later review replaces it, and the audit log keeps
    each. Thresholds stay as they are."""
    if verdict not in VERDICTS:
        raise Refused(400, f"field 'verdict' must be one of {', '.join(VERDICTS)}")
    get(conn, hit_id)
    conn.execute("UPDATE fraud_hits SET verdict = ?, reviewed_by = ?, reviewed_at = ?,"
                 " note = ? WHERE id = ?", (verdict, actor, iso(now), note, hit_id))
    return get(conn, hit_id)


def decide_hold(conn: Connection, hit_id: int, action: str, reason: str, actor: str,
                now: datetime) -> dict[str, Any]:
    """A person releases the hit's hold (the points become spendable again) or confirms it
    (the held points are withdrawn, with a ledger row)."""
    if action not in HOLD_ACTIONS:
        raise Refused(400, f"field 'action' must be one of {', '.join(HOLD_ACTIONS)}")
    with transaction(conn):
        hit = get(conn, hit_id)
        if hit["customer_id"] is not None:
            # Read again under the customer's lock: two people deciding at once on
            # PostgreSQL must not both release (or both withdraw) the same points.
            ledger.lock_customers(conn, [hit["customer_id"]])
            hit = get(conn, hit_id)
        if hit["hold_status"] != "held":
            raise Refused(409, f"fraud hit {hit_id} holds no points"
                               + (f" (its hold was {hit['hold_status']})"
                                  if hit["hold_status"] else ""))
        if action == "release":
            points = fraud_holds.release(conn, hit_id, hit["customer_id"], now)
            status = "released"
        else:
            points = fraud_holds.confirm(conn, hit_id, hit["customer_id"], actor, reason,
                                         now)
            status = "confirmed"
        conn.execute("UPDATE fraud_hits SET hold_status = ?, hold_by = ?, hold_at = ?"
                     " WHERE id = ?", (status, actor, iso(now), hit_id))
        return {**get(conn, hit_id), "points": points}
