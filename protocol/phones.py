"""Phone numbers as both ends compare them: E.164, parsed with Google's libphonenumber rules.

"+7 900 111-22-33", "8 (900) 111 22 33" and "+79001112233" are one number; the central keeps
it in this form, and a till turns a typed number into this form before it hashes it, so the
same phone gives the same token at every till and at the central (protocol.card_keys).
"""

from __future__ import annotations

import phonenumbers

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
