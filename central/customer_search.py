"""Finding customers: by id, card (last four digits or the whole number), phone and name,
a page at a time in a stable order: by id, or with a name by name then id; `after` is the
`next_after` of the page before (an opaque cursor).

Names are matched as people type them in Russian: case-folded beyond ASCII (str.casefold),
ё as е, spaces collapsed, from the start of the name. Each customer keeps that form of the
name in `name_key` (written wherever the name is), and a prefix is a range of that indexed
column, read in the index's order (name_key, id), so a page of a search that matches a
hundred thousand names reads that page's rows, never every name and never a sort. Phones
are kept in E.164 (protocol.phones), so the typed number is normalised and matched
exactly. A whole card number becomes its tokens under every live key
(protocol.card_keys) and is never stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from central import alerts, customer_phones
from central.db import Connection
from central.errors import Refused
from protocol import phones
from protocol.card_keys import CardKeyring
from protocol.cards import normalize_card_number

MAX_PAGE = 200
DEFAULT_PAGE = 50
# The highest code point: a key beginning with a prefix sorts below prefix + this.
_TOP = "\U0010ffff"


def name_key(name: str) -> str:
    """The name as searches compare it: "  Пётр  ИВАНОВ " -> "петр иванов"."""
    # NFC first: "ё" typed as "е" + combining diaeresis is the same letter.
    folded = unicodedata.normalize("NFC", name).casefold().replace("ё", "е")
    return " ".join(folded.split())


@dataclass(frozen=True)
class CustomerQuery:
    """Filters (all given must hold) and the page: `after` is the last id already seen."""

    id: str | None = None
    last4: str | None = None
    card_number: str | None = None
    phone: str | None = None
    name: str | None = None
    after: str | None = None
    limit: int = DEFAULT_PAGE

    def filters(self) -> list[str]:
        """The names of the filters given (the audit log keeps these, never their values)."""
        return [k for k in ("id", "last4", "card_number", "phone", "name")
                if getattr(self, k) is not None]


def search(conn: Connection, card_keys: CardKeyring, q: CustomerQuery) -> dict:
    """A page of customers matching `q`, ordered by id; `next_after` pages on (None on the
    last page). Raises InvalidCardNumber or protocol.phones.InvalidPhone on a bad filter."""
    where: list[str] = []
    params: list[object] = []
    if q.id is not None:
        where.append("c.id = ?")
        params.append(q.id)
    if q.last4 is not None:
        where.append("c.id IN (SELECT customer_id FROM cards WHERE last4 = ?)")
        params.append(q.last4)
    if q.card_number is not None:
        tokens = card_keys.tokens(normalize_card_number(q.card_number))
        where.append("c.id IN (SELECT customer_id FROM cards WHERE retired_at IS NULL AND ("
                     + " OR ".join("(token = ? AND key_version = ?)" for _ in tokens) + "))")
        for version, token in tokens:
            params += [token, version]
    if q.phone is not None:
        where.append("c.phone = ?")
        params.append(phones.e164(q.phone))
    key = name_key(q.name) if q.name is not None else ""
    if key:  # a name of spaces alone matches everyone
        where.append("c.name_key >= ? AND c.name_key < ?")
        params += [key, key + _TOP]
    if q.after is not None:
        if key:
            after_key, after_id = _name_cursor(q.after)
            where.append("(c.name_key > ? OR (c.name_key = ? AND c.id > ?))")
            params += [after_key, after_key, after_id]
        else:
            where.append("c.id > ?")
            params.append(q.after)
    limit = max(1, min(q.limit, MAX_PAGE))
    rows = conn.execute(
        "SELECT c.id, c.name, c.name_key, c.phone, c.tier, c.segments, c.blocked,"
        " c.phone_review FROM customers c" + (" WHERE " + " AND ".join(where) if where else "")
        + (" ORDER BY c.name_key, c.id" if key else " ORDER BY c.id") + " LIMIT ?",
        (*params, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_after = None
    if more:
        last = rows[-1]
        next_after = _name_after(last["name_key"], last["id"]) if key else last["id"]
    cards = _cards(conn, [r["id"] for r in rows])
    found = [{
        "id": r["id"], "name": r["name"], "phone": r["phone"], "tier": r["tier"],
        "segments": json.loads(r["segments"]), "cards": cards.get(r["id"], []),
        "blocked": r["blocked"] is not None,
        # set by the phone migration: a number another customer had first, or no valid one
        "phone_review": r["phone_review"],
    } for r in rows]
    return {"customers": found, "next_after": next_after}


def _name_after(key: str, customer_id: str) -> str:
    """The cursor past (name_key, id), URL-safe; callers pass it back as it came."""
    raw = json.dumps([key, customer_id], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _name_cursor(after: str) -> tuple[str, str]:
    try:
        key, customer_id = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
        if not isinstance(key, str) or not isinstance(customer_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise Refused(400, "field 'after' must be the 'next_after' of the page before"
                      ) from None
    return key, customer_id


def _cards(conn: Connection, ids: list[str]) -> dict[str, list[str]]:
    if not ids:
        return {}
    out: dict[str, list[str]] = {}
    for r in conn.execute(
            "SELECT customer_id, last4 FROM cards WHERE retired_at IS NULL AND customer_id IN ("
            + ", ".join("?" for _ in ids) + ") ORDER BY created_at", ids):
        out.setdefault(r["customer_id"], []).append("****" + r["last4"])
    return out


def backfill(conn: Connection, now: datetime) -> None:
    """The migration's data step: every name's key, and every phone in E.164.

    Phones typed before they were normalised may be one number twice ("+7 900 ..." on one
    customer, "8 (900) ..." on another). Neither customer is lost or changed beyond the
    phone: the number goes to the one who already holds it in E.164, else the oldest; the
    others keep the number as typed, marked `phone_review` with the id it duplicates, and
    an alert names both (ids only), for support to sort out with the customers. A phone
    that is no valid number keeps its text and is marked `invalid` the same way."""
    rows = conn.execute("SELECT id, name, phone, created_at FROM customers"
                        " ORDER BY created_at, id").fetchall()
    for r in rows:
        conn.execute("UPDATE customers SET name_key = ? WHERE id = ?",
                     (name_key(r["name"]), r["id"]))
    holders: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        if r["phone"] is None:
            continue
        try:
            number = phones.e164(r["phone"])
        except phones.InvalidPhone:
            conn.execute("UPDATE customers SET phone_review = 'invalid' WHERE id = ?",
                         (r["id"],))
            alerts.raise_alert(conn, now, "customer-phone-invalid",
                               f"customer {r['id']}: the phone on record is no valid number;"
                               " it is kept as typed, and phone searches do not find it",
                               severity="info", customer_id=r["id"])
            continue
        holders.setdefault(number, []).append((r["id"], r["phone"]))
    for number, held in holders.items():
        # one who holds it exactly already keeps it, so no update collides with another row
        keeper = next((cid for cid, typed in held if typed == number), held[0][0])
        conn.execute("UPDATE customers SET phone = ? WHERE id = ?", (number, keeper))
        for cid, _ in held:
            if cid == keeper:
                continue
            conn.execute("UPDATE customers SET phone_review = ? WHERE id = ?",
                         (f"duplicate of {keeper}", cid))
            alerts.raise_alert(conn, now, "customer-phone-duplicate",
                               f"customers {keeper} and {cid} had one phone number typed two"
                               f" ways; {keeper} keeps it, {cid} keeps it as typed until"
                               " support settles which customer it belongs to",
                               customer_id=cid)
    # Tills hold phones (as tokens) from now on: each customer with one goes to them again.
    customer_phones.mark_changed(conn)
