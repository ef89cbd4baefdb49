"""The authoritative points ledger: lots, entries, debts.

Every earning is a lot with its own activation and expiry; spending consumes the
soonest-expiring active lots first; what cannot be covered becomes a debt, paid from lots
as they activate. Each movement is one row in `ledger`, so a balance can always be
explained entry by entry. Functions here run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from central.clock import iso
from central.db import next_counter

ENTRY_KINDS = ("earn", "activate", "redeem", "clawback", "refund", "expire", "adjust", "bonus")
# `activate` moves points from pending to available: it is recorded for the history but is
# not a movement of the total, so the ledger's invariant is
#     sum(points of every entry but activate) == available + pending.
MOVEMENT_KINDS = tuple(k for k in ENTRY_KINDS if k != "activate")


@dataclass(frozen=True)
class Balance:
    available: int  # spendable now, debt already subtracted (may be negative)
    pending: int  # earned, waiting out the return window
    debt: int

    def to_dict(self) -> dict[str, int]:
        return {"available": self.available, "pending": self.pending, "debt": self.debt}


@dataclass(frozen=True)
class Source:
    """Where a movement came from: a till's journal entry, or a person at head office."""

    till_id: str | None = None
    seq: int | None = None
    receipt_id: str | None = None
    actor: str | None = None
    reason: str | None = None


def _record(
    conn: sqlite3.Connection,
    customer_id: str,
    kind: str,
    points: int,
    now: datetime,
    src: Source,
) -> int:
    cur = conn.execute(
        "INSERT INTO ledger (customer_id, kind, points, at, till_id, seq, receipt_id, actor,"
        " reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            customer_id,
            kind,
            points,
            iso(now),
            src.till_id,
            src.seq,
            src.receipt_id,
            src.actor,
            src.reason,
        ),
    )
    return int(cur.lastrowid or 0)


def touch(conn: sqlite3.Connection, customer_id: str) -> None:
    """Mark the customer changed, so tills pull the new balance with their next delta."""
    conn.execute(
        "UPDATE customers SET change_seq = ? WHERE id = ?",
        (next_counter(conn, "customer_change"), customer_id),
    )


def touch_many(conn: sqlite3.Connection, customer_ids: list[str]) -> None:
    """touch() for many customers with one counter update: a batch marks each once."""
    if not customer_ids:
        return
    conn.execute(
        "UPDATE counters SET value = value + ? WHERE name = 'customer_change'",
        (len(customer_ids),),
    )
    last = conn.execute("SELECT value FROM counters WHERE name = 'customer_change'").fetchone()[0]
    first = last - len(customer_ids) + 1
    conn.executemany(
        "UPDATE customers SET change_seq = ? WHERE id = ?",
        [(first + i, c) for i, c in enumerate(customer_ids)],
    )


def existing_customers(conn: sqlite3.Connection, customer_ids: list[str]) -> set[str]:
    found: set[str] = set()
    # SQLite limits bound parameters per statement; 500 stays well below every build's limit.
    for i in range(0, len(customer_ids), 500):
        chunk = customer_ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0] for r in conn.execute(f"SELECT id FROM customers WHERE id IN ({marks})", chunk)
        )
    return found


def _add_debt(conn: sqlite3.Connection, customer_id: str, points: int) -> None:
    conn.execute("UPDATE customers SET debt = debt + ? WHERE id = ?", (points, customer_id))


def _debt(conn: sqlite3.Connection, customer_id: str) -> int:
    row = conn.execute("SELECT debt FROM customers WHERE id = ?", (customer_id,)).fetchone()
    return int(row["debt"]) if row else 0


def mature(conn: sqlite3.Connection, customer_id: str, now: datetime) -> None:
    """Activate lots whose return window has passed, expire the outlived, then pay debt."""
    t = iso(now)
    # Most calls find nothing to do: one query says so, instead of three.
    due = conn.execute(
        "SELECT debt,"
        " EXISTS(SELECT 1 FROM lots WHERE customer_id = ?1 AND status = 'pending'"
        "        AND activates_at <= ?2),"
        " EXISTS(SELECT 1 FROM lots WHERE customer_id = ?1 AND status = 'active'"
        "        AND expires_at <= ?2)"
        " FROM customers WHERE id = ?1",
        (customer_id, t),
    ).fetchone()
    if due is None or not (due[0] or due[1] or due[2]):
        return
    for lot in conn.execute(
        "SELECT id, remaining FROM lots WHERE customer_id = ? AND status = 'pending'"
        " AND activates_at <= ? ORDER BY activates_at, id",
        (customer_id, t),
    ).fetchall():
        conn.execute("UPDATE lots SET status = 'active' WHERE id = ?", (lot["id"],))
        if lot["remaining"]:
            _record(conn, customer_id, "activate", lot["remaining"], now, Source())
    for lot in conn.execute(
        "SELECT id, remaining FROM lots WHERE customer_id = ? AND status = 'active'"
        " AND expires_at <= ?",
        (customer_id, t),
    ).fetchall():
        conn.execute("UPDATE lots SET status = 'expired', remaining = 0 WHERE id = ?", (lot["id"],))
        if lot["remaining"]:
            _record(conn, customer_id, "expire", -lot["remaining"], now, Source())
    debt = _debt(conn, customer_id)
    if debt:
        # Paying debt from lots leaves the net balance unchanged, so it is no ledger entry.
        paid = _consume(conn, customer_id, debt, "status = 'active'")
        _add_debt(conn, customer_id, -sum(p for _, p in paid))


def _consume(
    conn: sqlite3.Connection,
    customer_id: str,
    points: int,
    where: str,
    params: tuple = (),
) -> list[tuple[int, int]]:
    """Take up to `points` from lots matching `where`, soonest expiry first."""
    taken: list[tuple[int, int]] = []
    left = points
    for lot in conn.execute(
        f"SELECT id, remaining FROM lots WHERE customer_id = ? AND remaining > 0 AND {where}"
        " ORDER BY expires_at, id",
        (customer_id, *params),
    ).fetchall():
        if left == 0:
            break
        take = min(left, lot["remaining"])
        conn.execute("UPDATE lots SET remaining = remaining - ? WHERE id = ?", (take, lot["id"]))
        taken.append((lot["id"], take))
        left -= take
    return taken


def earn(
    conn: sqlite3.Connection,
    customer_id: str,
    points: int,
    activates: datetime,
    expires: datetime,
    now: datetime,
    src: Source,
    kind: str = "earn",
) -> None:
    status = "active" if activates <= now else "pending"
    conn.execute(
        "INSERT INTO lots (customer_id, till_id, receipt_id, points, remaining, activates_at,"
        " expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            customer_id,
            src.till_id,
            src.receipt_id,
            points,
            points,
            iso(activates),
            iso(expires),
            status,
        ),
    )
    _record(conn, customer_id, kind, points, now, src)
    if status == "active":
        # An immediately active lot pays debt at once, like a lot that activates later.
        mature(conn, customer_id, now)


def redeem(
    conn: sqlite3.Connection,
    customer_id: str,
    points: int,
    now: datetime,
    src: Source,
    kind: str = "redeem",
) -> int:
    """Spend points; returns the shortfall that became debt (offline overspend)."""
    mature(conn, customer_id, now)
    entry = _record(conn, customer_id, kind, -points, now, src)
    taken = _consume(conn, customer_id, points, "status = 'active'")
    conn.executemany(
        "INSERT INTO redemption_lots (ledger_id, lot_id, points) VALUES (?, ?, ?)",
        [(entry, lot_id, p) for lot_id, p in taken],
    )
    shortfall = points - sum(p for _, p in taken)
    if shortfall:
        _add_debt(conn, customer_id, shortfall)
    return shortfall


def clawback(
    conn: sqlite3.Connection,
    customer_id: str,
    points: int,
    original_receipt_id: str,
    now: datetime,
    src: Source,
) -> int:
    """Take back points earned on returned goods; returns the part that became debt."""
    mature(conn, customer_id, now)
    _record(conn, customer_id, "clawback", -points, now, src)
    # The receipt's own lot first (usually still pending), then any active points.
    taken = _consume(
        conn,
        customer_id,
        points,
        "till_id = ? AND receipt_id = ?",
        (src.till_id, original_receipt_id),
    )
    left = points - sum(p for _, p in taken)
    if left:
        left -= sum(p for _, p in _consume(conn, customer_id, left, "status = 'active'"))
    if left:
        _add_debt(conn, customer_id, left)
    return left


def refund(
    conn: sqlite3.Connection,
    customer_id: str,
    points: int,
    original_receipt_id: str,
    now: datetime,
    src: Source,
) -> None:
    """Give back points spent on returned goods, into the lots they came from."""
    _record(conn, customer_id, "refund", points, now, src)
    left = points
    # Points that went into debt when the receipt was redeemed come back off the debt first.
    debt = _debt(conn, customer_id)
    restored_from_lots = conn.execute(
        "SELECT rl.rowid AS rid, rl.lot_id, rl.points, lots.status FROM redemption_lots rl"
        " JOIN ledger l ON l.id = rl.ledger_id JOIN lots ON lots.id = rl.lot_id"
        " WHERE l.till_id = ? AND l.receipt_id = ? AND l.kind = 'redeem' AND rl.points > 0"
        " ORDER BY rl.rowid DESC",
        (src.till_id, original_receipt_id),
    ).fetchall()
    for row in restored_from_lots:
        if left == 0:
            break
        back = min(left, row["points"])
        if row["status"] == "expired":
            # Points given back into a lot that has expired meanwhile expire with it.
            _record(conn, customer_id, "expire", -back, now, src)
        else:
            conn.execute(
                "UPDATE lots SET remaining = remaining + ? WHERE id = ?", (back, row["lot_id"])
            )
        conn.execute(
            "UPDATE redemption_lots SET points = points - ? WHERE rowid = ?", (back, row["rid"])
        )
        left -= back
    if left and debt:
        paid = min(left, debt)
        _add_debt(conn, customer_id, -paid)
        left -= paid
    if left:
        far = now + timedelta(days=365)
        conn.execute(
            "INSERT INTO lots (customer_id, till_id, receipt_id, points, remaining,"
            " activates_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'active')",
            (customer_id, src.till_id, src.receipt_id, left, left, iso(now), iso(far)),
        )
    mature(conn, customer_id, now)


def balance(conn: sqlite3.Connection, customer_id: str) -> Balance:
    row = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN status = 'active' THEN remaining END), 0) AS active,"
        " COALESCE(SUM(CASE WHEN status = 'pending' THEN remaining END), 0) AS pending"
        " FROM lots WHERE customer_id = ?",
        (customer_id,),
    ).fetchone()
    debt = _debt(conn, customer_id)
    return Balance(available=row["active"] - debt, pending=row["pending"], debt=debt)


def movement_total(conn: sqlite3.Connection, customer_id: str) -> int:
    """The sum of the ledger's movements, which must equal available + pending."""
    marks = ",".join("?" * len(MOVEMENT_KINDS))
    return conn.execute(
        f"SELECT COALESCE(SUM(points), 0) FROM ledger WHERE customer_id = ? AND kind IN ({marks})",
        (customer_id, *MOVEMENT_KINDS),
    ).fetchone()[0]


def history(conn: sqlite3.Connection, customer_id: str, limit: int = 100) -> list[dict]:
    rows = conn.execute(
        "SELECT kind, points, at, till_id, seq, receipt_id, actor, reason FROM ledger"
        " WHERE customer_id = ? ORDER BY id DESC LIMIT ?",
        (customer_id, limit),
    ).fetchall()
    return [{k: v for k, v in dict(r).items() if v is not None} for r in rows]
