"""Payment account references (PAR, EMVCo): how a bank card is known without its number.

A payment terminal gives the POS the card's PAR, 29 upper-case letters and digits that
stay the same for the account whatever its card number (a reissued or a tokenised card
in a phone wallet). A customer's bank card can be linked by its PAR, so the till identifies
them from what the terminal reports, never reading the card number. Like a card number, a
PAR is kept only as a keyed token under the card keys (protocol.card_keys), in a domain of
its own so that it never equals a card's or a phone's token.
"""

from __future__ import annotations

import hashlib
import hmac

from protocol.card_keys import CardKeyring
from protocol.cards import TOKEN_PREFIX

LENGTH = 29
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class InvalidPar(ValueError):
    """Not a PAR; the message names the field, never the value."""

    def __init__(self, field: str = "par") -> None:
        super().__init__(f"field {field!r} must be a payment account reference:"
                         f" {LENGTH} letters A-Z and digits")


def normalize_par(value: object, field: str = "par") -> str:
    """The PAR in upper case, spaces dropped; InvalidPar unless it is one."""
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidPar(field)
    par = value.replace(" ", "").upper()
    if len(par) != LENGTH or not set(par) <= _ALPHABET:
        raise InvalidPar(field)
    return par


def par_token(secret: bytes, par: str) -> str:
    """The PAR's token under one key; shaped as a card token, as tills keep it with them."""
    mac = hmac.new(secret, b"par:" + par.encode("ascii"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + mac[:32]


def tokens(ring: CardKeyring, par: str) -> list[tuple[int, str]]:
    """The PAR's token under every key, newest first."""
    return [(k.version, par_token(k.secret, par)) for k in ring]


def token(ring: CardKeyring, par: str) -> tuple[int, str]:
    key = ring.newest
    return key.version, par_token(key.secret, par)
