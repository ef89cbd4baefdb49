"""The till's view of customers: the central's last word plus this till's own unsynced entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlite_utils

from agent import campaign_allowances
from agent.store import without_fsync
from protocol import balances
from protocol.phones import is_phone_token
from protocol.rules import birthday_from_wire
from protocol.wire import unpack


@dataclass(frozen=True)
class CustomerView:
    id: str
    tier: str | None
    segments: frozenset[str]
    available: int  # spendable now, as far as this till can know
    pending: int  # earned, waiting out the return window
    debt: int
    birthday: date | None = None
    offers: frozenset[str] = field(default_factory=frozenset)
    purchases: int = 0  # sales so far, this till's unsynced ones included
    qualifying_spend: int = 0  # kopecks in the current tier window, as the central counts


@dataclass(frozen=True)
class Blocked:
    """Why the till refuses a customer or a card: head office blocked it (central.blocks)."""

    reason: str
    card: bool  # the card alone, not the customer

    def message(self, last4: str | None = None) -> str:
        what = f"card ****{last4}" if self.card and last4 else (
            "this card" if self.card else "this customer")
        return f"{what} is blocked by head office: {self.reason}"


def blocked(db: sqlite_utils.Database, customer_id: str,
            tokens: list[str] | tuple[str, ...] = ()) -> Blocked | None:
    """The block that refuses this customer (or the card they were identified by, one of
    `tokens`), as the last delta said; None if neither is blocked."""
    row = db.execute("SELECT blocked FROM customers WHERE id = ?", [customer_id]).fetchone()
    if row is not None and row[0] is not None:
        return Blocked(row[0], card=False)
    if tokens:
        row = db.execute(
            f"SELECT blocked FROM cards WHERE token IN ({','.join('?' * len(tokens))})"
            " AND blocked IS NOT NULL LIMIT 1", list(tokens)).fetchone()
        if row is not None:
            return Blocked(row[0], card=True)
    return None


def by_phone_tokens(db: sqlite_utils.Database, tokens: list[str]) -> str | None:
    """The customer whose phone has one of these tokens (a number's under each card key,
    newest first)."""
    if not tokens:
        return None
    found = dict(db.execute(
        f"SELECT token, customer_id FROM phones WHERE token IN ({','.join('?' * len(tokens))})",
        list(tokens)).fetchall())
    return next((found[t] for t in tokens if t in found), None)


def by_token(db: sqlite_utils.Database, token: str) -> str | None:
    row = db.execute("SELECT customer_id FROM cards WHERE token = ?", [token]).fetchone()
    return row[0] if row else None


def by_tokens(db: sqlite_utils.Database, tokens: list[str] | tuple[str, ...]) -> str | None:
    """The first of a card's tokens (newest key first) that a cached customer holds: one
    query for all of them, as identifying a card is on the POS's clock."""
    if not tokens:
        return None
    found = dict(db.execute(
        f"SELECT token, customer_id FROM cards WHERE token IN ({','.join('?' * len(tokens))})",
        list(tokens)).fetchall())
    return next((found[t] for t in tokens if t in found), None)


def view(db: sqlite_utils.Database, customer_id: str,
         now: datetime | None = None) -> CustomerView | None:
    """The customer as this till can know them at `now` (the stored figures without it)."""
    row = db.execute(
        "SELECT tier, segments, available, pending, debt, as_of_epoch, as_of_seq, profile, lots,"
        " (SELECT value FROM meta WHERE key = 'epoch') FROM customers WHERE id = ?",
        [customer_id]
    ).fetchone()
    if row is None:
        return None
    (tier, segments, available, pending, debt, as_of_epoch, as_of_seq, profile_json, lots,
     current) = row
    profile = json.loads(profile_json)
    # Entries the central had not applied when it sent this balance still count here. An
    # older epoch's entries are all in the central's figures, or were carried into the
    # current epoch when it began (agent.epochs): `current`, read with the row.
    since = as_of_seq if as_of_epoch == current else 0
    mine = db.execute(
        "SELECT seq, kind, receipt_id, earned, redeemed, clawback, refund, at, body"
        " FROM journal WHERE customer_id = ? AND epoch = ? AND seq > ? ORDER BY seq",
        [customer_id, current, since]
    ).fetchall()
    sales = sum(1 for r in mine if r[1] == "sale")
    if lots is not None and now is not None:
        # From the lots' own dates: points turn available and expire on time, however long
        # this till has been without the central (protocol.balances).
        b = _replay(json.loads(lots), debt, mine, now)
        available, pending, debt = b.available, b.pending, b.debt
    else:
        available += sum(r[6] - r[4] for r in mine)
        pending = max(0, pending + sum(r[3] - r[5] for r in mine))
    return CustomerView(
        id=customer_id,
        tier=tier,
        segments=frozenset(json.loads(segments)),
        available=available,
        pending=pending,
        debt=debt,
        birthday=birthday_from_wire(profile.get("birthday")),
        offers=frozenset(profile.get("offers", ())) | _unused_granted(db, customer_id, profile,
                                                                      current),
        purchases=profile.get("purchases", 0) + sales,
        # The central's figure: an upgrade earned by this till's own unsynced receipts
        # shows once they are synced (the engine already counts the receipt being priced).
        qualifying_spend=profile.get("qualifying_spend", 0),
    )


# Keys for this till's own unsynced lots: above any lot id the central hands out, so among
# lots of equal expiry they come last, as they will in the central's ledger.
_OWN_KEYS = 1 << 53


def _replay(lots: list[dict], debt: int, mine: list[tuple], now: datetime) -> balances.Balance:
    """The central's lots and debt, then this till's unsynced entries, then the clock."""
    state = balances.State(tuple(balances.lot_from_wire(d) for d in lots), debt)
    events: list[balances.Event] = []
    for seq, kind, receipt_id, _earned, redeemed, clawback, refund, at_text, body in mine:
        at = datetime.fromisoformat(at_text)
        # In the order the central applies an entry (central.settlement).
        if redeemed:
            events.append(balances.Spend(at, redeemed))
        entry = unpack(body)
        for i, lot in enumerate(entry.get("lots") or ()):
            events.append(balances.Earn(
                at, _OWN_KEYS + seq * 100 + i, lot["points"],
                datetime.fromisoformat(lot["activates"]), datetime.fromisoformat(lot["expires"]),
                receipt_id=receipt_id))
        if kind == "return":
            if refund:
                events.append(balances.Credit(at, refund, _OWN_KEYS + seq * 100 + 99, at,
                                              datetime.fromisoformat(balances.NEVER)))
            if clawback:
                events.append(balances.Spend(at, clawback,
                                             receipt_id=entry.get("original_receipt_id")))
        now = max(now, at)  # a clock set back never hides this till's own entries
    return balances.replay(state, events, now).balance()


def _lots_json(c: dict) -> str | None:
    lots = c.get("lots")
    if lots is None:
        return None
    for d in lots:
        balances.lot_from_wire(d)  # refuse a malformed lot now, not at the next checkout
    return json.dumps(lots)


PROFILE = ("birthday", "offers", "granted_offers", "purchases", "qualifying_spend",
           "receipt_lines")

# A message line waits at the central at most this long (central.messages), so this till's
# own receipts of that long ago say which lines it printed already.
RECEIPT_LINE_DAYS = 31


def receipt_lines(db: sqlite_utils.Database, customer_id: str,
                  now: datetime) -> list[tuple[str, str]]:
    """(key, text) of the messages the central asked to print on the customer's next
    receipt, less those this till printed already: the central learns of a print from
    the journal, a follower's step after ingest, and meanwhile still sends the line."""
    row = db.execute("SELECT profile FROM customers WHERE id = ?", [customer_id]).fetchone()
    waiting = json.loads(row[0]).get("receipt_lines") if row else None
    if not waiting:
        return []
    since = (now - timedelta(days=RECEIPT_LINE_DAYS)).isoformat(timespec="seconds")
    done: set[str] = set()
    for (body,) in db.execute(
        "SELECT body FROM journal WHERE customer_id = ? AND kind = 'sale' AND at >= ?",
        [customer_id, since]
    ):
        done.update(unpack(body)["detail"].get("messages_printed", ()))
    return [(str(w["key"]), str(w["text"])) for w in waiting if w["key"] not in done]


def _unused_granted(db: sqlite_utils.Database, customer_id: str,
                    profile: dict, epoch_: str) -> frozenset[str]:
    """Offers a purchase earned (good for one purchase), less those this till's receipts used
    that the central had not counted when it sent them: a till must not honour one twice.

    The central counts uses with campaign budgets, a step after ingest: so the cut-off is how
    far that count had come (allowances_seq), not the acknowledged sequence."""
    granted = frozenset(profile.get("granted_offers", ()))
    if not granted:
        return granted
    counted, counted_epoch = db.execute(
        "SELECT allowances_seq, as_of_epoch FROM customers WHERE id = ?", [customer_id]
    ).fetchone()
    since = counted if counted_epoch == epoch_ else 0
    used: set[str] = set()
    for (body,) in db.execute(
        "SELECT body FROM journal WHERE customer_id = ? AND epoch = ? AND seq > ?"
        " AND kind = 'sale'", [customer_id, epoch_, since]
    ):
        used.update(unpack(body)["detail"].get("settlement", {}).get("offers_used", ()))
    return granted - used


# Customers applied per transaction: small enough that the event loop, which applies them
# between POS requests, is never held for long (agent.sync yields between chunks).
CHUNK = 200


def apply_deltas(db: sqlite_utils.Database, delta: dict) -> None:
    """Store what the central sent; its `acked_seq` says which of our entries it includes."""
    for start in range(0, len(delta["customers"]), CHUNK):
        apply_chunk(db, delta, delta["customers"][start:start + CHUNK])
    finish_page(db, delta)


def apply_chunk(db: sqlite_utils.Database, delta: dict, chunk: list[dict]) -> None:
    """Some customers of a page, in one transaction. A crash between chunks leaves the
    cursor where it was: the page comes again and is stored again, changing nothing."""
    rows = [(c["id"], c.get("tier"), _json_list(c.get("segments")), c["available"],
             # the block's reason (central.blocks), shown to the cashier
             _reason(c.get("blocked")),
             c["pending"], c["debt"], delta.get("epoch"), delta.get("acked_seq", 0),
             json.dumps({k: c[k] for k in PROFILE if k in c}),
             campaign_allowances.customer_figures(delta, c),
             # Budget usage trails the acknowledgement (central.campaign_budgets):
             # its own sequence says which of our grants the figures include.
             delta.get("budgets", {}).get("as_of_seq", 0),
             # The lots behind the balance, for agent.customers.view to replay.
             _lots_json(c)) for c in chunk]
    cards = [(token, c["id"], _reason((c.get("blocked_cards") or {}).get(token)))
             for c in chunk for token in c["cards"]]
    phones = [(token, c["id"]) for c in chunk for token in c.get("phones") or ()
              if is_phone_token(token)]
    with without_fsync(db):
        _store_chunk(db, rows, chunk, cards, phones)


def _store_chunk(db: sqlite_utils.Database, rows: list[tuple], chunk: list[dict],
                 cards: list[tuple[str, str, str | None]],
                 phones: list[tuple[str, str]]) -> None:
    with db.atomic():
        db.conn.executemany(
            "INSERT OR REPLACE INTO customers (id, tier, segments, available, blocked, pending,"
            " debt, as_of_epoch, as_of_seq, profile, allowances, allowances_seq, lots)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # By the index on cards(customer_id) (agent.store m008): a lookup, not a scan.
        db.conn.executemany("DELETE FROM cards WHERE customer_id = ?",
                            [(c["id"],) for c in chunk])
        db.conn.executemany("INSERT OR REPLACE INTO cards (token, customer_id, blocked)"
                            " VALUES (?, ?, ?)", cards)
        db.conn.executemany("DELETE FROM phones WHERE customer_id = ?",
                            [(c["id"],) for c in chunk])
        # a number moved from one customer to another is the newer one's
        db.conn.executemany("INSERT OR REPLACE INTO phones (token, customer_id) VALUES (?, ?)",
                            phones)


MAX_REASON = 200


def _reason(value: object) -> str | None:
    """A block's reason as the central sent it; a block whose reason is not text still
    blocks (fail closed), with a reason that says so."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value[:MAX_REASON]
    return "blocked by head office"


def _json_list(values: list | None) -> str:
    return json.dumps(values) if values else "[]"


def finish_page(db: sqlite_utils.Database, delta: dict) -> None:
    """After a page's customers: the budgets it carried, and the cursor past it."""
    with without_fsync(db), db.atomic():
        if "budgets" in delta:
            campaign_allowances.save(db, delta["budgets"], delta.get("epoch"))
        db.execute("UPDATE meta SET value = ? WHERE key = 'customer_cursor'",
                   [str(delta["cursor"])])
