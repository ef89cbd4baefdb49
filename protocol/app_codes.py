"""One-time codes from the customer's app: TOTP (RFC 6238) that a till checks offline.

The app's secret (its seed) is not stored anywhere: it is derived from the programme's card
key and the customer's id, HMAC-SHA256(key, "tillpoint-app-code:" + id), its first 20
bytes, so the central and every till, which hold the card keys (kept apart from the data,
sent only over TLS: README "Card data"), can check a code with no customer data of their
own, and a card-key rotation gives every app a new seed (the app fetches it again). The
label keeps the two uses of the key apart: a card token is HMAC(key, "card:" + number).

Codes are RFC 6238's: HMAC-SHA1, 30-second steps, 6 digits, any authenticator app can make
them from the `otpauth://` URI. A code is taken one step either side of the checker's
clock (the phone's and the till's clocks differ), under each card key still in its
lifetime, newest first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from datetime import datetime
from urllib.parse import quote, urlencode

from protocol.card_keys import CardKey, CardKeyring

STEP_S = 30
DIGITS = 6
WINDOW = 1  # steps either side
SEED_BYTES = 20  # RFC 4226's recommended length for HMAC-SHA1
LABEL = b"tillpoint-app-code:"
ISSUER = "Tillpoint"


class BadCode(ValueError):
    pass


def seed(key: CardKey, customer_id: str) -> bytes:
    return hmac.new(key.secret, LABEL + customer_id.encode(), hashlib.sha256).digest()[
        :SEED_BYTES]


def hotp(secret: bytes, counter: int) -> str:
    """RFC 4226: HMAC-SHA1 of the counter, dynamically truncated to DIGITS digits."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_S


def code_at(key: CardKey, customer_id: str, step: int) -> str:
    return hotp(seed(key, customer_id), step)


def check_format(code: object) -> str:
    """Six ASCII digits, or BadCode saying so (never echoing what was sent)."""
    if not isinstance(code, str) or len(code) != DIGITS or not code.isascii() \
            or not code.isdigit():
        raise BadCode(f"a one-time code is {DIGITS} digits")
    return code


def verify(ring: CardKeyring, customer_id: str, code: str, now: datetime,
           window: int = WINDOW) -> tuple[int, int] | None:
    """(key version, step) of the code if it is the customer's within the window, else None."""
    check_format(code)
    current = step_at(now)
    for key in ring.active(now):
        # the current step first: it is the one a code shown just now belongs to
        for step in sorted(range(current - window, current + window + 1),
                           key=lambda s: abs(s - current)):
            if hmac.compare_digest(code_at(key, customer_id, step), code):
                return key.version, step
    return None


def matches(ring: CardKeyring, customer_id: str, code: str, version: int, step: int) -> bool:
    """Whether `code` is the customer's code for that key version and step (the central's
    re-check of a journalled proof: the step is judged against the sale time apart)."""
    for key in ring:
        if key.version == version:
            return hmac.compare_digest(code_at(key, customer_id, step), code)
    return False


def otpauth_uri(key: CardKey, customer_id: str, account: str = "") -> str:
    """What the customer's app is given (once, over TLS): the standard key URI."""
    secret = base64.b32encode(seed(key, customer_id)).decode().rstrip("=")
    label = quote(f"{ISSUER}:{account or customer_id}")
    return "otpauth://totp/" + label + "?" + urlencode(
        {"secret": secret, "issuer": ISSUER, "algorithm": "SHA1", "digits": DIGITS,
         "period": STEP_S})
