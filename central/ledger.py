"""The authoritative points ledger: lots, entries, debts.

Every earning is a lot with its own activation and expiry; spending consumes the
soonest-expiring active lots first; what cannot be covered becomes a debt, paid from lots
as they activate. Each movement is one row in `ledger`, so a balance can always be
explained entry by entry. Functions here run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from central.clock import iso, parse_iso
from central.db import Connection, Row, transaction
from protocol import balances

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
    conn: Connection,
    customer_id: str,
    kind: str,
    points: int,
    now: datetime,
    src: Source,
) -> int:
    row = conn.execute(
        "INSERT INTO ledger (customer_id, kind, points, at, till_id, seq, receipt_id, actor,"
        " reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
    ).fetchone()
    return int(row[0])


def touch(conn: Connection, customer_id: str) -> None:
    """Mark the customer changed, so tills pull the new balance with their next delta."""
    touch_many(conn, [customer_id])


def touch_many(conn: Connection, customer_ids: Iterable[str]) -> None:
    """Mark customers changed (touch()), each once however often a transaction touches it.

    Tills read changes in the order of these marks (`change_seq > cursor`, central.deltas),
    so the marks must become visible in that order: they are taken from the
    `customer_change` counter as the transaction's last writes (Connection.at_commit), and
    its row stays locked only from there to the COMMIT. Ingest transactions of several
    central processes overlap in everything but that, as with the ingest sequence
    (central.ingest_log). A customer touched in a savepoint that rolled back is marked all
    the same: a till pulls them once more, unchanged."""
    ids = list(customer_ids)
    if not ids:
        return
    pending = conn.at_commit("customer-change", set, _mark_changed)
    if pending is None:  # no transaction open: one of its own
        with transaction(conn):
            touch_many(conn, ids)
        return
    pending.update(ids)


def _mark_changed(conn: Connection, customer_ids: set[str]) -> None:
    ordered = sorted(customer_ids)  # rows in id order, as lock_customers takes them
    last = int(conn.execute(
        "UPDATE counters SET value = value + ? WHERE name = 'customer_change' RETURNING value",
        (len(ordered),)).fetchone()[0])
    first = last - len(ordered) + 1
    conn.executemany("UPDATE customers SET change_seq = ? WHERE id = ?",
                     [(first + i, c) for i, c in enumerate(ordered)])


def existing_customers(conn: Connection, customer_ids: list[str]) -> set[str]:
    return set(read_customers(conn, customer_ids))


def read_customers(conn: Connection, customer_ids: list[str]) -> dict[str, Row]:
    """The rows (id and tier window) of those customers that exist, in one query per 500:
    ingest reads a batch's customers once, to know them and to count their purchases."""
    found: dict[str, Row] = {}
    for chunk in _chunks(customer_ids):
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT id, tier, window_start, window_spend FROM customers WHERE id IN ({marks})",
            chunk,
        ):
            found[r["id"]] = r
    return found


def lock_customers(conn: Connection, customer_ids: Iterable[str]) -> None:
    """Lock these customers until the transaction ends, before changing any of them: on
    PostgreSQL two processes must not both read a customer's lots and spend them. In id
    order, and before other customers are touched, by every transaction that locks
    several, so no two wait on each other in a circle. (SQLite: the transaction's write
    lock covers it.)"""
    if not conn.dialect.for_update:
        return
    for chunk in _chunks(sorted(set(customer_ids))):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"SELECT id FROM customers WHERE id IN ({marks}) ORDER BY id"
                     + conn.dialect.for_update, chunk).fetchall()


def _chunks(ids: list[str]) -> list[list[str]]:
    # SQLite limits bound parameters per statement; 500 stays well below every build's limit.
    return [ids[i : i + 500] for i in range(0, len(ids), 500)]


def _nothing_due(conn: Connection, customer_ids: list[str], now: datetime) -> set[str]:
    """Those customers for whom mature() would find nothing to do: no debt, no lot to
    activate or to expire (the check mature() begins with, for many at once)."""
    t = iso(now)
    clean: set[str] = set()
    for chunk in _chunks(customer_ids):
        marks = ",".join("?" * len(chunk))
        clean.update(r[0] for r in conn.execute(
            f"SELECT id FROM customers c WHERE id IN ({marks}) AND debt = 0"
            " AND NOT EXISTS(SELECT 1 FROM lots WHERE customer_id = c.id"
            "                AND status = 'pending' AND hold IS NULL AND activates_at <= ?)"
            " AND NOT EXISTS(SELECT 1 FROM lots WHERE customer_id = c.id"
            "                AND status = 'active' AND expires_at <= ? AND remaining > 0)",
            (*chunk, t, t),
        ))
    return clean


def _add_debt(conn: Connection, customer_id: str, points: int) -> None:
    conn.execute("UPDATE customers SET debt = debt + ? WHERE id = ?", (points, customer_id))


def _debt(conn: Connection, customer_id: str) -> int:
    row = conn.execute("SELECT debt FROM customers WHERE id = ?", (customer_id,)).fetchone()
    return int(row["debt"]) if row else 0


def _state(conn: Connection, customer_id: str) -> balances.State:
    """The customer's live lots and debt as stored (current as of their last maturing).

    A lot spent to nothing keeps its status: it can change nothing any more, so neither
    this nor the checks for due work look at it again."""
    rows = conn.execute(
        # A lot on hold (central.credits: not yet re-priced, or its till quarantined) never
        # activates while it is: the replay sees it as activating at the end of time.
        "SELECT id, receipt_id, remaining, expires_at, status,"
        " CASE WHEN hold IS NULL THEN activates_at ELSE ? END AS activates_at FROM lots"
        " WHERE customer_id = ? AND status IN ('pending', 'active')"
        " AND (remaining > 0 OR status = 'pending')",
        (balances.NEVER, customer_id),
    ).fetchall()
    return balances.State(
        tuple(balances.Lot(r["id"], r["remaining"], parse_iso(r["activates_at"]),
                           parse_iso(r["expires_at"]), active=r["status"] == "active",
                           receipt_id=r["receipt_id"]) for r in rows),
        _debt(conn, customer_id),
    )


def mature(conn: Connection, customer_id: str, now: datetime) -> bool:
    """Bring the stored lots and debt up to `now`: activations and expiries in time order,
    each activation paying debt before anything can expire (protocol.balances.advance).
    Returns whether anything changed."""
    t = iso(now)
    # Most calls find nothing to do: one query says so, instead of loading the lots.
    due = conn.execute(
        "SELECT debt,"
        " EXISTS(SELECT 1 FROM lots WHERE customer_id = ? AND status = 'pending'"
        "        AND hold IS NULL AND activates_at <= ?),"
        " EXISTS(SELECT 1 FROM lots WHERE customer_id = ? AND status = 'active'"
        "        AND expires_at <= ? AND remaining > 0)"
        " FROM customers WHERE id = ?",
        (customer_id, t, customer_id, t, customer_id),
    ).fetchone()
    if due is None or not (due[0] or due[1] or due[2]):
        return False
    before = _state(conn, customer_id)
    after, steps = balances.advance(before, now)
    for step in steps:
        if step.kind == "activate":
            conn.execute("UPDATE lots SET status = 'active' WHERE id = ?", (step.key,))
            if step.points:
                _record(conn, customer_id, "activate", step.points, step.at, Source())
        elif step.kind == "pay":
            # Paying debt from lots leaves the net balance unchanged, so it is no entry.
            conn.execute("UPDATE lots SET remaining = remaining - ? WHERE id = ?",
                         (step.points, step.key))
        else:
            conn.execute("UPDATE lots SET status = 'expired', remaining = 0 WHERE id = ?",
                         (step.key,))
            if step.points:
                _record(conn, customer_id, "expire", -step.points, step.at, Source())
    if after.debt != before.debt:
        _add_debt(conn, customer_id, after.debt - before.debt)
    return bool(steps)


def state_at(conn: Connection, customer_id: str, now: datetime) -> balances.State:
    """The customer's lots and debt as they stand at `now`, computed, not written."""
    return balances.advance(_state(conn, customer_id), now)[0]


def states_at(conn: Connection, debts: dict[str, int],
              now: datetime) -> dict[str, balances.State]:
    """state_at() for many customers (id -> stored debt) in one query per 500: a delta page
    reads a thousand customers' lots at once."""
    lots: dict[str, list[balances.Lot]] = {c: [] for c in debts}
    for chunk in _chunks(list(debts)):
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            # As _state(): a held lot never activates while it is held.
            "SELECT customer_id, id, receipt_id, remaining, expires_at, status,"
            " CASE WHEN hold IS NULL THEN activates_at ELSE ? END AS activates_at FROM lots"
            f" WHERE customer_id IN ({marks}) AND status IN ('pending', 'active')"
            " AND (remaining > 0 OR status = 'pending') ORDER BY customer_id, id",
            (balances.NEVER, *chunk),
        ):
            lots[r["customer_id"]].append(balances.Lot(
                r["id"], r["remaining"], parse_iso(r["activates_at"]),
                parse_iso(r["expires_at"]), active=r["status"] == "active",
                receipt_id=r["receipt_id"]))
    return {c: balances.advance(balances.State(tuple(lots[c]), int(debt or 0)), now)[0]
            for c, debt in debts.items()}


def due_customers(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Customers with a lot to activate or to expire by `now`: the scheduled job's work."""
    t = iso(now)
    return [r[0] for r in conn.execute(
        "SELECT customer_id FROM lots WHERE status = 'pending' AND activates_at <= ?"
        "   AND hold IS NULL"
        " UNION SELECT customer_id FROM lots WHERE status = 'active' AND expires_at <= ?"
        "   AND remaining > 0"
        " LIMIT ?", (t, t, limit))]


def mature_due(conn: Connection, now: datetime, limit: int = 500) -> int:
    """The scheduled job: write back what the clock did to up to `limit` customers' lots,
    and mark them changed so tills pull the new figures. Reads never wait for it (they
    replay the clock themselves); it keeps the stored figures and the history current.
    Returns how many customers it matured."""
    with transaction(conn):
        if not conn.dialect.try_lock(conn, "job:maturing"):
            return 0  # another process is at it
        due = due_customers(conn, now, limit)
        lock_customers(conn, due)
        done = [c for c in due if mature(conn, c, now)]
        touch_many(conn, done)
    return len(done)


def _consume(
    conn: Connection,
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
    conn: Connection,
    customer_id: str,
    points: int,
    activates: datetime,
    expires: datetime,
    now: datetime,
    src: Source,
    kind: str = "earn",
) -> None:
    status = "active" if activates <= now else "pending"
    if status == "active":
        # What the clock did before this lot existed happens first: a lot that activated
        # earlier pays the debt, not this one.
        mature(conn, customer_id, now)
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
    conn: Connection,
    customer_id: str,
    points: int,
    now: datetime,
    src: Source,
    kind: str = "redeem",
    *,
    mature_first: bool = True,
) -> int:
    """Spend points; returns the shortfall that became debt (offline overspend).

    `mature_first=False` only for a caller that knows mature() has nothing to do.
    """
    if mature_first:
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


def withdraw(conn: Connection, customer_id: str, points: int, now: datetime,
             src: Source) -> None:
    """Record the withdrawal of points whose lots the caller has emptied (an adjustment):
    central.credits takes back a provisional credit the central's re-pricing does not give."""
    if points:
        _record(conn, customer_id, "adjust", -points, now, src)


def clawback(
    conn: Connection,
    customer_id: str,
    points: int,
    original_receipt_id: str,
    now: datetime,
    src: Source,
) -> int:
    """Take back points earned on returned goods; returns the part that became debt."""
    mature(conn, customer_id, now)
    _record(conn, customer_id, "clawback", -points, now, src)
    # The receipt's own lot first (usually still pending), then any active points. The
    # receipt id alone names the sale (80 random bits): the return may be at another till.
    taken = _consume(conn, customer_id, points, "receipt_id = ?", (original_receipt_id,))
    left = points - sum(p for _, p in taken)
    if left:
        left -= sum(p for _, p in _consume(conn, customer_id, left, "status = 'active'"))
    if left:
        _add_debt(conn, customer_id, left)
    return left


def refund(
    conn: Connection,
    customer_id: str,
    points: int,
    original_receipt_id: str,
    now: datetime,
    src: Source,
) -> None:
    """Give back points spent on returned goods, into the lots they came from."""
    mature(conn, customer_id, now)  # the lots as they stand now: expired ones stay expired
    _record(conn, customer_id, "refund", points, now, src)
    left = points
    # Points that went into debt when the receipt was redeemed come back off the debt first.
    debt = _debt(conn, customer_id)
    # Newest redemption first, each in the reverse of the order it consumed its lots
    # (_consume: soonest expiry first); a redemption takes from a lot once.
    restored_from_lots = conn.execute(
        "SELECT rl.ledger_id, rl.lot_id, rl.points, lots.status FROM redemption_lots rl"
        " JOIN ledger l ON l.id = rl.ledger_id JOIN lots ON lots.id = rl.lot_id"
        " WHERE l.receipt_id = ? AND l.kind = 'redeem' AND l.customer_id = ?"
        " AND rl.points > 0 ORDER BY rl.ledger_id DESC, lots.expires_at DESC, rl.lot_id DESC",
        (original_receipt_id, customer_id),
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
            "UPDATE redemption_lots SET points = points - ? WHERE ledger_id = ? AND lot_id = ?",
            (back, row["ledger_id"], row["lot_id"])
        )
        left -= back
    if left and debt:
        paid = min(left, debt)
        _add_debt(conn, customer_id, -paid)
        left -= paid
    if left:
        # Spent beyond the balance (offline) and the debt since paid from later active
        # lots, which are not recorded one by one: the points come back with the expiry of
        # the soonest-expiring of them, so a return never lengthens points' life.
        row = conn.execute(
            "SELECT MIN(expires_at) FROM lots WHERE customer_id = ? AND status = 'active'"
            " AND expires_at > ?", (customer_id, iso(now))).fetchone()
        expires = row[0] if row and row[0] else iso(now)
        status = "active" if expires > iso(now) else "expired"
        conn.execute(
            "INSERT INTO lots (customer_id, till_id, receipt_id, points, remaining,"
            " activates_at, expires_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (customer_id, src.till_id, src.receipt_id, left,
             left if status == "active" else 0, iso(now), expires, status),
        )
        if status == "expired":
            _record(conn, customer_id, "expire", -left, now, src)
    mature(conn, customer_id, now)


# A provisional lot's dates (central.credits.FAR): never reached.
_FAR = "9999-12-31T00:00:00+00:00"


def _stored_form(text: str) -> bool:
    """Whether an ISO timestamp is already as the ledger stores it: iso(), UTC, seconds.

    Tills send lots' dates so; such a string compares with another by plain string order,
    and is stored as it came instead of parsed and formatted again.
    """
    return (
        len(text) == 25 and text[4] == "-" and text[7] == "-" and text[10] == "T"
        and text[13] == ":" and text[16] == ":" and text.endswith("+00:00")
    )


class BatchLedger:
    """The ledger operations of one ingested batch, at one `now`, with its writes grouped.

    A lot that is still pending takes no part in spending, maturing or paying debt until
    it activates, so its lot and `earn` rows wait and are written with one executemany
    each. What does read them (a clawback takes from the receipt's own lot, pending or
    not) and the order of a customer's ledger rows are kept by writing what waits before
    any other operation on a customer who has rows waiting.

    `spenders`, the customers the batch redeems for, are checked once for anything
    mature() would do; one with nothing due stays so through pending earnings and
    redemptions the balance covers, and their redemptions skip mature(). Any other
    operation on a customer, or a shortfall, ends that. Call flush() before the batch's
    transaction or savepoint ends.
    """

    def __init__(self, conn: Connection, now: datetime, spenders: list[str]) -> None:
        self.conn = conn
        self.now = now
        self.at = iso(now)
        self._clean = _nothing_due(conn, spenders, now) if spenders else set()
        self._lots: list[tuple] = []
        self._ledger: list[tuple] = []
        self._waiting: set[str] = set()

    def flush(self) -> None:
        if self._lots:
            self.conn.executemany(
                "INSERT INTO lots (customer_id, till_id, receipt_id, points, remaining,"
                " activates_at, expires_at, status, hold)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                self._lots,
            )
            self.conn.executemany(
                "INSERT INTO ledger (customer_id, kind, points, at, till_id, seq, receipt_id,"
                " actor, reason) VALUES (?, 'earn', ?, ?, ?, ?, ?, ?, ?)",
                self._ledger,
            )
        self._lots.clear()
        self._ledger.clear()
        self._waiting.clear()

    def _before(self, customer_id: str) -> None:
        if customer_id in self._waiting:
            self.flush()

    def earn_provisional(self, customer_id: str, points: int, src: Source) -> None:
        """Points a till says a sale earned, pending until re-priced (central.credits)."""
        self._lots.append((customer_id, src.till_id, src.receipt_id, points, points,
                           _FAR, _FAR, "unverified"))
        self._ledger.append((customer_id, points, self.at, src.till_id, src.seq,
                             src.receipt_id, src.actor, src.reason))
        self._waiting.add(customer_id)

    def earn(self, customer_id: str, points: int, activates: str, expires: str,
             src: Source) -> None:
        """earn() of a lot whose dates are ISO strings, as journal entries carry them."""
        # Parsed whatever their form: a lot whose date is no date is refused, as always.
        start, end = parse_iso(activates), parse_iso(expires)
        if _stored_form(activates):
            pending = activates > self.at
        else:
            pending = start > self.now
            activates = iso(start)
        if not _stored_form(expires):
            expires = iso(end)
        if not pending:
            self._before(customer_id)
            self._clean.discard(customer_id)
            earn(self.conn, customer_id, points, start, end, self.now, src)
            return
        self._lots.append((customer_id, src.till_id, src.receipt_id, points, points,
                           activates, expires, None))
        self._ledger.append((customer_id, points, self.at, src.till_id, src.seq,
                             src.receipt_id, src.actor, src.reason))
        self._waiting.add(customer_id)

    def redeem(self, customer_id: str, points: int, src: Source) -> int:
        self._before(customer_id)
        shortfall = redeem(self.conn, customer_id, points, self.now, src,
                           mature_first=customer_id not in self._clean)
        if shortfall:
            self._clean.discard(customer_id)
        return shortfall

    def clawback(self, customer_id: str, points: int, original_receipt_id: str,
                 src: Source) -> int:
        self._before(customer_id)
        self._clean.discard(customer_id)
        return clawback(self.conn, customer_id, points, original_receipt_id, self.now, src)

    def refund(self, customer_id: str, points: int, original_receipt_id: str,
               src: Source) -> None:
        self._before(customer_id)
        self._clean.discard(customer_id)
        refund(self.conn, customer_id, points, original_receipt_id, self.now, src)


def balance(conn: Connection, customer_id: str, now: datetime | None = None) -> Balance:
    """The balance at `now`, whether or not anything has matured the stored lots since
    (protocol.balances.advance over what is stored); without `now`, the stored figures."""
    if now is not None:
        b = state_at(conn, customer_id, now).balance()
        return Balance(available=b.available, pending=b.pending, debt=b.debt)
    row = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN status = 'active' THEN remaining END), 0) AS active,"
        " COALESCE(SUM(CASE WHEN status = 'pending' THEN remaining END), 0) AS pending"
        " FROM lots WHERE customer_id = ?",
        (customer_id,),
    ).fetchone()
    debt = _debt(conn, customer_id)
    return Balance(available=row["active"] - debt, pending=row["pending"], debt=debt)


def movement_total(conn: Connection, customer_id: str) -> int:
    """The sum of the ledger's movements, which must equal available + pending."""
    marks = ",".join("?" * len(MOVEMENT_KINDS))
    return conn.execute(
        f"SELECT COALESCE(SUM(points), 0) FROM ledger WHERE customer_id = ? AND kind IN ({marks})",
        (customer_id, *MOVEMENT_KINDS),
    ).fetchone()[0]


def history(conn: Connection, customer_id: str, limit: int = 100) -> list[dict]:
    rows = conn.execute(
        "SELECT kind, points, at, till_id, seq, receipt_id, actor, reason FROM ledger"
        " WHERE customer_id = ? ORDER BY id DESC LIMIT ?",
        (customer_id, limit),
    ).fetchall()
    return [{k: v for k, v in dict(r).items() if v is not None} for r in rows]
