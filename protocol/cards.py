"""Card numbers become card tokens here, and nowhere else.

A token is a keyed HMAC of the card number under the programme's card secret, so the
same card gives the same token at every till and at the central, while a leaked database,
journal or log gives nothing back. The number itself is never stored, logged or sent.
"""

from __future__ import annotations

import hashlib
import hmac

from protocol.bounds import ascii_digits

TOKEN_PREFIX = "ct_"


class InvalidCardNumber(ValueError):
    """A card number that is not a string of digits of a plausible length."""


def normalize_card_number(number: str) -> str:
    """Digits only, spaces and dashes dropped; refuses anything else without echoing it."""
    if not isinstance(number, str) or len(number) > 64:
        raise InvalidCardNumber("card number must be 6 to 19 digits")
    digits = number.replace(" ", "").replace("-", "")
    # ASCII digits only: isdigit() also passes Arabic-Indic and fullwidth ones.
    if not ascii_digits(digits) or not 6 <= len(digits) <= 19:
        raise InvalidCardNumber("card number must be 6 to 19 digits")
    return digits


def card_token(secret: bytes, number: str) -> str:
    """The card token for `number` under the programme secret `secret`."""
    digits = normalize_card_number(number)
    mac = hmac.new(secret, b"card:" + digits.encode("ascii"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + mac[:32]


def is_card_token(value: str) -> bool:
    return (
        value.startswith(TOKEN_PREFIX)
        and len(value) == len(TOKEN_PREFIX) + 32
        and all(c in "0123456789abcdef" for c in value[len(TOKEN_PREFIX) :])
    )


def luhn_valid(digits: str) -> bool:
    """The Luhn check that tells a bank card's PAN from other digit strings."""
    if not ascii_digits(digits) or len(digits) < 12:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def masked(number: str) -> str:
    """What a receipt or a screen may show of a card: its last four digits."""
    digits = normalize_card_number(number)
    return "*" * 4 + digits[-4:]
