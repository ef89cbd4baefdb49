"""Blocking a customer or one of their cards, with a reason; and what a block means for the
sales tills send afterwards.

A block reaches the tills with the customer's next delta (central.deltas: `blocked`, the
customer's reason, and `blocked_cards`, each blocked card's token with its reason); a till
refuses the customer or the card from then on, showing the reason (agent.pos_api).

The central credits nothing to a blocked customer for a sale the till made after it had been
sent the block: what counts is what that till was sent (central.deliveries keeps each view
with its `blocked`), so a till offline since before the block, which could not know, has its
sales credited as usual. So is a card's block, where the sale names the card: a sale that
spent points carries the presented card's tokens in its proof of presence; a sale that only
earned names the customer alone, and there a card's block is the till's to enforce.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from central import ledger
from central.clock import iso, parse_iso
from central.db import Connection, transaction
from central.deliveries import CLOCK_TOLERANCE
from central.errors import Refused
from protocol import bounds
from protocol.card_keys import CardKeyring
from protocol.cards import normalize_card_number

MAX_REASON = 200  # shown to the cashier at the till


class BlockError(Refused):
    """A block that cannot be done: no such customer or card, or nothing to change."""


def _reason(value: object) -> str:
    reason = bounds.text(value, "reason", max_len=MAX_REASON, required=True).strip()
    if not reason:
        raise BlockError(400, "field 'reason' must say why, for the cashier to tell the"
                              " customer")
    return reason


def set_customer(conn: Connection, customer_id: str, reason: object, now: datetime,
                 *, blocked: bool) -> dict[str, Any]:
    """Block (or unblock) the customer; returns the block as it now stands."""
    why = _reason(reason)
    with transaction(conn):
        row = conn.execute("SELECT blocked FROM customers WHERE id = ?",
                           (customer_id,)).fetchone()
        if row is None:
            raise BlockError(404, "no such customer")
        if (row["blocked"] is not None) == blocked:
            raise BlockError(409, "the customer is blocked already" if blocked
                             else "the customer is not blocked")
        conn.execute("UPDATE customers SET blocked = ?, blocked_at = ? WHERE id = ?",
                     (why if blocked else None, iso(now) if blocked else None, customer_id))
        ledger.touch(conn, customer_id)  # tills hear of it with their next delta
    return {"blocked": blocked, "reason": why}


def set_card(conn: Connection, card_keys: CardKeyring, customer_id: str,
             card: dict[str, str | None], reason: object, now: datetime,
             *, blocked: bool) -> dict[str, Any]:
    """Block (or unblock) one of the customer's live cards, named by `card`: its whole
    `card_number`, or its `last4` where no other card of the customer ends so."""
    why = _reason(reason)
    with transaction(conn):
        if conn.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone() \
                is None:
            raise BlockError(404, "no such customer")
        token = _card_token(conn, card_keys, customer_id, card)
        row = conn.execute("SELECT blocked, last4 FROM cards WHERE token = ?",
                           (token,)).fetchone()
        if (row["blocked"] is not None) == blocked:
            raise BlockError(409, f"card ****{row['last4']} is blocked already" if blocked
                             else f"card ****{row['last4']} is not blocked")
        conn.execute("UPDATE cards SET blocked = ?, blocked_at = ? WHERE token = ?",
                     (why if blocked else None, iso(now) if blocked else None, token))
        ledger.touch(conn, customer_id)
    return {"card": "****" + row["last4"], "blocked": blocked, "reason": why}


def _card_token(conn: Connection, card_keys: CardKeyring, customer_id: str,
                card: dict[str, str | None]) -> str:
    number, last4 = card.get("card_number"), card.get("last4")
    if number is not None:
        tokens = card_keys.tokens(normalize_card_number(number))
        for version, token in tokens:
            if conn.execute("SELECT 1 FROM cards WHERE token = ? AND key_version = ?"
                            " AND customer_id = ? AND retired_at IS NULL",
                            (token, version, customer_id)).fetchone():
                return token
        raise BlockError(404, "the customer has no live card with this number")
    rows = conn.execute("SELECT token FROM cards WHERE customer_id = ? AND last4 = ?"
                        " AND retired_at IS NULL", (customer_id, last4)).fetchall()
    if not rows:
        raise BlockError(404, f"the customer has no live card ending {last4}")
    if len(rows) > 1:
        raise BlockError(409, f"the customer has {len(rows)} cards ending {last4}: name the"
                              " card by its whole 'card_number'")
    return str(rows[0]["token"])


def sale_refusal(conn: Connection, till_id: str, customer_id: str, sold_at: datetime,
                 card_tokens: Sequence[str] = ()) -> str | None:
    """Why a sale the till made for the customer at `sold_at` is not credited, or None.

    Refused when every view of the customer that the till may have held at the sale carried
    a block: the newest sent before the sale (by more than the clocks may differ), and any
    sent within that margin of it. A till that had not been sent the block sold in good
    faith; one that had was told to refuse the customer. `card_tokens`: the card the sale
    names in its proof of presence (protocol.presence), refused the same way if that card
    was blocked in every such view; a sale without a card proof names no card."""
    margin_before, margin_after = sold_at - CLOCK_TOLERANCE, sold_at + CLOCK_TOLERANCE
    held: list[dict[str, Any]] = []
    for r in conn.execute(
            "SELECT view, delivered_at FROM till_views WHERE till_id = ? AND customer_id = ?"
            " AND delivered_at <= ? ORDER BY id DESC LIMIT 50",
            (till_id, customer_id, iso(margin_after))):
        held.append(json.loads(r["view"]))
        if parse_iso(r["delivered_at"]) <= margin_before:
            break  # the newest surely held; older ones had been replaced by it
    if not held:
        return None
    if all(v.get("blocked") for v in held):
        return f"the customer was blocked ({held[0]['blocked']}) and this till had been told"
    card_blocks = [next((why for t in card_tokens
                         if (why := (v.get("blocked_cards") or {}).get(t))), None)
                   for v in held]
    if card_tokens and all(card_blocks):
        return f"the card was blocked ({card_blocks[0]}) and this till had been told"
    return None
