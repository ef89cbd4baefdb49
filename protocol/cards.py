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
        raise InvalidCardNumber("card_number must be 6 to 19 digits")
    digits = number.replace(" ", "").replace("-", "")
    # ASCII digits only: isdigit() also passes Arabic-Indic and fullwidth ones.
    if not ascii_digits(digits) or not 6 <= len(digits) <= 19:
        raise InvalidCardNumber("card_number must be 6 to 19 digits")
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
    """The Luhn check digit. It does not tell a bank card: loyalty numbers use it too."""
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


# ISO/IEC 7812 issuer ranges of the payment schemes (docs: card-readers.md), as
# (scheme, prefix length, lowest, highest). UnionPay's 62 comes before Maestro's 56-69 so
# the narrower range names the scheme; either way the card is a payment card.
SCHEME_RANGES: tuple[tuple[str, int, int, int], ...] = (
    ("mir", 4, 2200, 2204),
    ("mastercard", 4, 2221, 2720),
    ("jcb", 4, 3528, 3589),
    ("amex", 2, 34, 34),
    ("amex", 2, 37, 37),
    ("visa", 1, 4, 4),
    ("maestro", 2, 50, 50),
    ("mastercard", 2, 51, 55),
    ("unionpay", 2, 62, 62),
    ("maestro", 2, 56, 69),
)
PAN_LENGTHS = range(13, 20)


def payment_scheme(digits: str, loyalty_ranges: tuple[str, ...] = ()) -> str | None:
    """The payment scheme whose range `digits` falls in, or None for any other number.

    A payment card needs all three: a scheme's issuer range, 13 to 19 digits and a valid
    Luhn digit. The programme's own card ranges (`loyalty_ranges`, prefixes) are loyalty
    cards even where a scheme range overlaps them.
    """
    if not (digits.isascii() and digits.isdigit()) or len(digits) not in PAN_LENGTHS:
        return None
    if any(digits.startswith(p) for p in loyalty_ranges):
        return None
    for scheme, width, lo, hi in SCHEME_RANGES:
        if lo <= int(digits[:width]) <= hi:
            return scheme if luhn_valid(digits) else None
    return None


def card_kind(digits: str, loyalty_ranges: tuple[str, ...] = ()) -> str:
    """"bank" for a payment card number, "loyalty" for any other."""
    return "bank" if payment_scheme(digits, loyalty_ranges) else "loyalty"


def check_loyalty_ranges(value: object, name: str = "loyalty_card_ranges") -> tuple[str, ...]:
    """A setting's list of card-number prefixes (1 to 19 digits), or ValueError naming it."""
    if not isinstance(value, list | tuple) or not all(
        isinstance(p, str) and p.isascii() and p.isdigit() and 1 <= len(p) <= 19 for p in value
    ):
        raise ValueError(f"{name} must be a list of card-number prefixes, 1 to 19 digits each")
    return tuple(value)
