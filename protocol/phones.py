"""Phone numbers as both ends compare them: E.164, parsed with Google's libphonenumber rules.

"+7 900 111-22-33", "8 (900) 111 22 33" and "+79001112233" are one number; the central keeps
it in this form, and a till turns a typed number into this form before it hashes it, so the
same phone gives the same token at every till and at the central.

A till holds phones only as phone tokens: a keyed HMAC of the E.164 number under the card
keys (protocol.card_keys), in a domain of its own so that no phone token is ever a card
token. A till's database, journal or logs give no number back without the key.
"""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers

from protocol.card_keys import CardKeyring

TOKEN_PREFIX = "pt_"

DEFAULT_REGION = "RU"  # a number typed without a country code is Russian ("8 900 ...")
MAX_TYPED = 32  # characters as typed, spaces and punctuation included


class InvalidPhone(ValueError):
    """Not a valid phone number; the message names the field, never the value."""

    def __init__(self, field: str = "phone") -> None:
        super().__init__(f"field {field!r} must be a valid phone number, e.g. +7 900 111-22-33")
        self.field = field


def e164(typed: object, field: str = "phone", region: str = DEFAULT_REGION) -> str:
    """The number in E.164 ("+79001112233"); InvalidPhone unless it is a valid number."""
    if not isinstance(typed, str) or not 0 < len(typed) <= MAX_TYPED:
        raise InvalidPhone(field)
    # Only ASCII digits count as digits: the library reads fullwidth and Arabic-Indic ones too,
    # and a number typed with them is no number anyone dials.
    if any(ch.isdigit() and not ch.isascii() for ch in typed):
        raise InvalidPhone(field)
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhone(field) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_token(secret: bytes, number: str) -> str:
    """The token of an E.164 `number` under one key."""
    mac = hmac.new(secret, b"phone:" + number.encode("ascii"), hashlib.sha256).hexdigest()
    return TOKEN_PREFIX + mac[:32]


def tokens(ring: CardKeyring, number: str) -> list[tuple[int, str]]:
    """The E.164 `number`'s token under every key of the ring, newest first: a central
    sends the newest, a till tries them all, as for cards."""
    return [(k.version, phone_token(k.secret, number)) for k in ring]


def is_phone_token(value: object) -> bool:
    return (isinstance(value, str) and value.startswith(TOKEN_PREFIX)
            and len(value) == len(TOKEN_PREFIX) + 32
            and all(c in "0123456789abcdef" for c in value[len(TOKEN_PREFIX):]))
