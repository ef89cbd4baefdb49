"""Linking a card again at a till once its key has retired.

A card not seen while its key was in its lifetime keeps its account (balance, history, last
four digits) but no till can recognise it (central.card_keys.retire_cards). The customer
links it again at a checkout: they prove the phone on the account with an SMS code that
this till asked for and had checked (central.presence: five minutes from sending, five
wrong tries, three codes per phone in ten minutes), then present the card. The till sends
its token under a key in its lifetime and its last four digits (the number itself never
leaves the reader's driver); the central puts it in place of the customer's retired card
with those digits. A verified code links one card, once.
"""

from __future__ import annotations

from datetime import datetime

from central import ledger
from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection
from central.errors import Refused
from protocol.card_keys import CardKeyring


def relink(conn: Connection, till_id: str, challenge: str, token: str, key_version: int,
           last4: str, keys: CardKeyring, now: datetime) -> str:
    """Link the card `token` to the customer who proved their phone with `challenge` at
    this till, in place of their retired card ending `last4`; returns the customer's id.
    Raises Refused with the reason. Inside the caller's transaction."""
    row = conn.execute(
        "SELECT customer_id, expires_at, status FROM presence_challenges"
        " WHERE id = ? AND till_id = ?", (challenge, till_id)).fetchone()
    if row is None:
        raise Refused(404, "no SMS code was sent for this till under this challenge")
    if row["status"] == "open":
        raise Refused(409, "the SMS code has not been checked yet: send the code the"
                           " customer reads out first")
    if row["status"] != "verified":
        raise Refused(410, f"this SMS code is {row['status']}: send a new one")
    if iso(now) >= row["expires_at"]:
        raise Refused(410, "this SMS code has expired: send a new one")
    if key_version not in keys.versions:
        raise Refused(409, f"card key version {key_version} is not in its lifetime at the"
                           f" central (it has {keys.versions}): pull the card keys again")
    customer_id = str(row["customer_id"])
    owner = conn.execute("SELECT customer_id FROM cards WHERE token = ?", (token,)).fetchone()
    if owner is not None:
        raise Refused(409, "this card is already linked to this customer"
                           if owner["customer_id"] == customer_id
                           else "this card belongs to another customer")
    retired = conn.execute(
        "SELECT token FROM cards WHERE customer_id = ? AND last4 = ? AND retired_at IS NOT NULL"
        " ORDER BY created_at LIMIT 1", (customer_id, last4)).fetchone()
    if retired is None:
        raise Refused(409, f"the customer has no card ending {last4} waiting to be linked"
                           " again: a new card is added by head office")
    conn.execute("UPDATE cards SET token = ?, key_version = ?, retired_at = NULL"
                 " WHERE token = ?", (token, key_version, retired["token"]))
    # Used up: neither a second card nor a sale's presence proof can take it again.
    conn.execute("UPDATE presence_challenges SET status = 'used' WHERE id = ?", (challenge,))
    ledger.touch(conn, customer_id)  # tills receive the card with the customer's next delta
    raise_alert(conn, now, "card-relinked",
                f"card ****{last4} linked again after an SMS code to the account's phone",
                severity="info", till_id=till_id, customer_id=customer_id)
    return customer_id
