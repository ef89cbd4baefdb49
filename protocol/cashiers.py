"""The cashier's id, as the POS names the person at the till: what a valid one looks like.

Checked where it enters (the POS API) and again where the central decodes a journal entry:
it is journalled with every receipt and return, in the hash-chained entry.
"""

from __future__ import annotations

MAX_LENGTH = 64


class BadCashier(ValueError):
    pass


def check(value: object) -> str:
    """The id itself, or BadCashier saying what is wrong with it: 1-64 printable characters
    of valid Unicode, not only spaces, no control characters."""
    if not isinstance(value, str):
        raise BadCashier("must be a string, the cashier's id in the POS")
    if not value.strip():
        raise BadCashier("must not be empty")
    if len(value) > MAX_LENGTH:
        raise BadCashier(f"must be at most {MAX_LENGTH} characters")
    if not value.isprintable():
        raise BadCashier("must be printable characters only (no control characters)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadCashier("must be valid Unicode (a lone surrogate is not)") from None
    return value
