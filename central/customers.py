"""Customers and their cards, as head office creates and reads them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

from central import ledger, rulesets, tiers
from central.clock import iso
from central.customer_search import name_key
from central.db import Connection, transaction
from central.errors import Refused
from protocol import bounds, lots, pars, phones
from protocol.card_keys import CardKeyring
from protocol.cards import card_kind, masked, normalize_card_number


class CustomerError(Refused):
    """A customer request that cannot be done: unknown, duplicate, or malformed."""


def create(
    conn: Connection,
    card_keys: CardKeyring,
    now: datetime,
    *,
    card_number: str,
    name: str = "",
    phone: str | None = None,
    tier: str | None = None,
    segments: list[str] | None = None,
    birthday: str | None = None,
    welcome_bonus: int = 0,
    bonus_lifetime_days: int = 365,
    actor: str = "head-office",
) -> dict:
    digits = normalize_card_number(card_number)
    name = _text(name, "name")
    phone = _phone(phone)
    tier = None if tier is None else _text(tier, "tier")
    segments = _segments(segments or [])
    birthday = _birthday(birthday)
    bounds.POINTS.check(welcome_bonus, "welcome_bonus")
    customer_id = "cus_" + uuid.uuid4().hex[:16]
    with transaction(conn):
        if _card_owner(conn, card_keys, digits) is not None:
            raise CustomerError(409, "this card already belongs to a customer")
        if phone and conn.execute("SELECT 1 FROM customers WHERE phone = ?", (phone,)).fetchone():
            raise CustomerError(409, "a customer with this phone number already exists")
        conn.execute(
            "INSERT INTO customers (id, name, name_key, phone, tier, segments, birthday,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (customer_id, name, name_key(name), phone, tier, json.dumps(segments), birthday,
             iso(now)),
        )
        _insert_card(conn, card_keys, customer_id, digits, now)
        if welcome_bonus:
            ledger.earn(
                conn,
                customer_id,
                welcome_bonus,
                *_bonus_dates(now, bonus_lifetime_days),
                now,
                ledger.Source(actor=actor, reason="welcome bonus"),
                kind="bonus",
            )
        ledger.touch(conn, customer_id)
    return read(conn, customer_id)


def _bonus_dates(now: datetime, lifetime_days: int) -> tuple[datetime, datetime]:
    """Points given at head office: no return window, so spendable at once (protocol.lots,
    as for a till's lots)."""
    activates, expires = lots.lot_dates(now, 0, lots.Lifetime(days=lifetime_days), UTC, UTC)
    assert expires is not None
    return activates, expires


def read(conn: Connection, customer_id: str, now: datetime | None = None) -> dict:
    """The customer as head office sees them; the balance as of `now` (see ledger.balance)."""
    row = conn.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise CustomerError(404, "no such customer")
    cards = conn.execute(
        "SELECT last4, retired_at, blocked, blocked_at, kind FROM cards WHERE customer_id = ?"
        " ORDER BY created_at", (customer_id,)).fetchall()
    return {
        "id": row["id"],
        "name": row["name"],
        "phone": row["phone"],
        "tier": row["tier"],
        "segments": json.loads(row["segments"]),
        "birthday": row["birthday"],
        "offers": json.loads(row["offers"]),
        "granted_offers": json.loads(row["granted_offers"]),
        "purchases": row["purchases"],
        "cards": ["****" + c["last4"] for c in cards if c["retired_at"] is None],
        # each live card's kind: loyalty, bank, virtual, par (a bank card by its payment
        # account reference), or None for one linked before kinds were kept
        "card_details": [{"last4": c["last4"], "kind": c["kind"]}
                         for c in cards if c["retired_at"] is None],
        # cards whose key retired before they were seen again: the customer links them anew
        "cards_to_relink": ["****" + c["last4"] for c in cards if c["retired_at"]],
        # head office's blocks (central.blocks): the tills refuse these, showing the reason
        "blocked": None if row["blocked"] is None else {"reason": row["blocked"],
                                                        "at": row["blocked_at"]},
        "blocked_cards": [{"last4": c["last4"], "reason": c["blocked"], "at": c["blocked_at"]}
                          for c in cards if c["blocked"] is not None and not c["retired_at"]],
        "balance": ledger.balance(conn, customer_id, now).to_dict(),
    }


def _card_owner(conn: Connection, card_keys: CardKeyring,
                digits: str) -> tuple[str, int, str] | None:
    """(customer, key version, token) of a live card, trying the newest key first."""
    for version, token in card_keys.tokens(digits):
        row = conn.execute("SELECT customer_id FROM cards WHERE token = ? AND key_version = ?"
                           " AND retired_at IS NULL", (token, version)).fetchone()
        if row is not None:
            return row["customer_id"], version, token
    return None


CARD_KINDS = ("loyalty", "bank", "virtual")


def _insert_card(conn: Connection, card_keys: CardKeyring, customer_id: str,
                 digits: str, now: datetime, kind: str | None = None) -> None:
    version, token = card_keys.token(digits)
    conn.execute(
        "INSERT INTO cards (token, customer_id, last4, created_at, key_version, kind)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (token, customer_id, masked(digits)[-4:], iso(now), version,
         kind or card_kind(digits)),
    )


def _kind(value: object) -> str | None:
    if value is None:
        return None
    if value not in CARD_KINDS:
        raise CustomerError(400, f"field 'kind' must be one of {', '.join(CARD_KINDS)}")
    return str(value)


def by_card(conn: Connection, card_keys: CardKeyring, card_number: str) -> str:
    """The card's customer. A card found under an older key is re-keyed under the newest on
    sight (its customer marked changed, so tills get the new token)."""
    digits = normalize_card_number(card_number)
    with transaction(conn):
        found = _card_owner(conn, card_keys, digits)
        if found is None:
            raise CustomerError(404, "no customer has this card")
        customer_id, version, token = found
        if version != card_keys.newest.version:
            new_version, new_token = card_keys.token(digits)
            conn.execute("UPDATE cards SET token = ?, key_version = ? WHERE token = ?",
                         (new_token, new_version, token))
            ledger.touch(conn, customer_id)
    return customer_id


def link_card(conn: Connection, card_keys: CardKeyring, customer_id: str,
              card_number: str, now: datetime, kind: object = None) -> dict:
    """Link a card to an existing account: a new card (of `kind`: loyalty, bank or virtual;
    by default told from its number), or one whose key retired (then its old record, kept
    for display, goes). The caller has made sure of the customer (README: relinking a
    card)."""
    digits = normalize_card_number(card_number)
    kind = _kind(kind)
    with transaction(conn):
        read(conn, customer_id)
        owner = _card_owner(conn, card_keys, digits)
        if owner is not None:
            if owner[0] == customer_id:
                raise CustomerError(409, "this card is already linked to this customer")
            raise CustomerError(409, "this card belongs to another customer")
        conn.execute("DELETE FROM cards WHERE customer_id = ? AND last4 = ?"
                     " AND retired_at IS NOT NULL", (customer_id, digits[-4:]))
        _insert_card(conn, card_keys, customer_id, digits, now, kind)
        ledger.touch(conn, customer_id)
    return read(conn, customer_id)


def _par_owner(conn: Connection, card_keys: CardKeyring, par: str) -> str | None:
    for version, token in pars.tokens(card_keys, par):
        row = conn.execute("SELECT customer_id FROM cards WHERE token = ? AND key_version = ?"
                           " AND retired_at IS NULL", (token, version)).fetchone()
        if row is not None:
            return str(row["customer_id"])
    return None


def link_par(conn: Connection, card_keys: CardKeyring, customer_id: str, par: object,
             now: datetime) -> dict:
    """Link a bank card by its payment account reference (protocol.pars): the till then
    identifies the customer from what the payment terminal reports."""
    par = pars.normalize_par(par)
    with transaction(conn):
        read(conn, customer_id)
        owner = _par_owner(conn, card_keys, par)
        if owner is not None:
            raise CustomerError(409, "this payment account reference is already linked"
                                     + (" to this customer" if owner == customer_id
                                        else " to another customer"))
        version, token = pars.token(card_keys, par)
        conn.execute(
            "INSERT INTO cards (token, customer_id, last4, created_at, key_version, kind)"
            " VALUES (?, ?, ?, ?, ?, 'par')",
            (token, customer_id, par[-4:], iso(now), version))
        ledger.touch(conn, customer_id)
    return read(conn, customer_id)


def unlink_card(conn: Connection, card_keys: CardKeyring, customer_id: str, last4: str,
                card_number: object = None, par: object = None) -> dict:
    """Remove one of the customer's cards, named by its last four characters, or where two
    end alike by its whole `card_number` or `par`. Tills drop it with their next delta."""
    with transaction(conn):
        read(conn, customer_id)
        rows = conn.execute("SELECT token, key_version FROM cards WHERE customer_id = ?"
                            " AND last4 = ?", (customer_id, last4)).fetchall()
        if card_number is not None or par is not None:
            named = (set(pars.tokens(card_keys, pars.normalize_par(par))) if par is not None
                     else set(card_keys.tokens(normalize_card_number(str(card_number)))))
            rows = [r for r in rows if (r["key_version"], r["token"]) in named]
        if not rows:
            raise CustomerError(404, f"the customer has no card ending {last4}"
                                     + (" with this number" if card_number or par else ""))
        if len(rows) > 1:
            raise CustomerError(409, f"the customer has {len(rows)} cards ending {last4}:"
                                     " name the one to remove by its 'card_number' or 'par'")
        conn.execute("DELETE FROM cards WHERE token = ?", (rows[0]["token"],))
        ledger.touch(conn, customer_id)
    return read(conn, customer_id)


def adjust(
    conn: Connection,
    customer_id: str,
    points: int,
    actor: str,
    reason: str,
    now: datetime,
    lifetime_days: int = 365,
) -> dict:
    """A manual correction by a named person, with a reason: both are kept in the ledger."""
    bounds.text(reason, "reason", required=True)
    bounds.text(actor, "actor", required=True)
    bounds.ADJUSTMENT.check(points, "points")
    if points == 0:
        raise CustomerError(400, "an adjustment of 0 points changes nothing")
    with transaction(conn):
        ledger.lock_customers(conn, [customer_id])
        read(conn, customer_id)
        _check_balance_after(conn, customer_id, points)
        src = ledger.Source(actor=actor, reason=reason)
        if points > 0:
            ledger.earn(
                conn,
                customer_id,
                points,
                *_bonus_dates(now, lifetime_days),
                now,
                src,
                kind="adjust",
            )
        else:
            ledger.redeem(conn, customer_id, -points, now, src, kind="adjust")
        ledger.touch(conn, customer_id)
    return read(conn, customer_id, now)


def _check_balance_after(conn: Connection, customer_id: str, points: int) -> None:
    """A balance (or a debt) beyond bounds.MAX_BALANCE is refused before it is written: the
    ledger's sums, the deltas and every till must always be able to hold it."""
    bal = ledger.balance(conn, customer_id)
    after = bal.available + bal.pending + points
    if not -bounds.MAX_BALANCE <= after <= bounds.MAX_BALANCE:
        raise CustomerError(422, f"field 'points' would take the balance beyond"
                                 f" ±{bounds.MAX_BALANCE} points")


MAX_SEGMENTS = 100


def _segments(value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_SEGMENTS:
        raise CustomerError(400, f"field 'segments' must be a list of at most {MAX_SEGMENTS}"
                                 " non-empty strings")
    for i, x in enumerate(value):
        bounds.text(x, f"segments[{i}]", max_len=64, required=True)
    return sorted(set(value))


def _birthday(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 10:
        raise CustomerError(400, "field 'birthday' must be a date, YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise CustomerError(400, "field 'birthday' must be a date, YYYY-MM-DD") from None
    if day.year < 1900:
        raise CustomerError(400, "field 'birthday' must be after 1900")
    return day.isoformat()


def _phone(value: object) -> str | None:
    """A phone number in E.164 (protocol.phones), so one number typed two ways is one
    customer's; empty means none (a second customer without a phone is no duplicate of
    the first)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return phones.e164(value)
    except phones.InvalidPhone as e:
        raise CustomerError(400, str(e)) from None


# What head office may change of a customer, and how each value is checked.
_EDITABLE = {
    "name": lambda v: _text(v, "name"),
    "phone": _phone,
    "tier": lambda v: None if v is None else _text(v, "tier"),
    "segments": lambda v: json.dumps(_segments(v)),
    "birthday": _birthday,
}


def _text(value: object, name: str) -> str:
    return bounds.text(value, name)


def update(conn: Connection, customer_id: str, changes: dict,
           now: datetime | None = None) -> dict:
    """Change profile fields; tills get them with their next customer delta."""
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise CustomerError(400, f"cannot change {', '.join(sorted(unknown))}; "
                                 f"editable: {', '.join(sorted(_EDITABLE))}")
    if not changes:
        raise CustomerError(400, "nothing to change")
    values = {k: _EDITABLE[k](v) for k, v in changes.items()}
    with transaction(conn):
        read(conn, customer_id)
        phone = values.get("phone")
        if phone and conn.execute("SELECT 1 FROM customers WHERE phone = ? AND id != ?",
                                  (phone, customer_id)).fetchone():
            raise CustomerError(409, "a customer with this phone number already exists")
        if "name" in values:
            values["name_key"] = name_key(values["name"])
        if "phone" in values:
            values["phone_review"] = None  # a number given anew settles the migration's doubt
        sets = ", ".join(f"{k} = ?" for k in values)  # keys come from _EDITABLE only
        conn.execute(f"UPDATE customers SET {sets} WHERE id = ?", (*values.values(), customer_id))
        ledger.touch(conn, customer_id)
    return read(conn, customer_id, now)


def activate_offer(conn: Connection, customer_id: str, offer: str,
                   now: datetime | None = None) -> dict:
    """The customer took up a personal offer: campaigns conditioned on it now apply."""
    offer = _text(offer, "offer").strip()
    if not offer:
        raise CustomerError(400, "offer must name the offer")
    with transaction(conn):
        current = set(read(conn, customer_id)["offers"])
        if offer not in current:
            conn.execute("UPDATE customers SET offers = ? WHERE id = ?",
                         (json.dumps(sorted(current | {offer})), customer_id))
            ledger.touch(conn, customer_id)
    return read(conn, customer_id, now)


ROLLOVER_CHUNK = 1000


def roll_tier_windows(conn: Connection, now: datetime) -> int:
    """Close finished tier windows: each such customer gets the tier the closed window's
    spend earned and a fresh window, and is marked changed so tills hear of a downgrade.
    Returns how many were rolled (at most ROLLOVER_CHUNK; call again while it is that)."""
    tier_rules = rulesets.current_tiers(conn)
    current = tiers.window_start(tier_rules, now)
    if current is None:
        return 0
    with transaction(conn):
        if not conn.dialect.try_lock(conn, "job:tier-windows"):
            return 0  # another process is at it
        rows = conn.execute(
            "SELECT id, tier, window_start, window_spend FROM customers"
            " WHERE window_start IS NOT NULL AND window_start < ? ORDER BY id LIMIT ?"
            + conn.dialect.for_update,
            (current, ROLLOVER_CHUNK),
        ).fetchall()
        for r in rows:
            tier, _ = tiers.effective(tier_rules, r["tier"], r["window_start"],
                                      r["window_spend"], now)
            conn.execute("UPDATE customers SET tier = ?, window_start = ?, window_spend = 0"
                         " WHERE id = ?", (tier, current, r["id"]))
            ledger.touch(conn, r["id"])
    return len(rows)
