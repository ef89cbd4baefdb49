"""Signed requests: how a till proves who it is on every call to the central.

The signature covers the method, the path with its query, a timestamp and the body's
hash; the central refuses timestamps outside a short window, so a captured request cannot
be replayed later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.signing import BadSignature, sign, verify

HEADER_TILL = "X-Tillpoint-Till"
HEADER_TIME = "X-Tillpoint-Time"
HEADER_SIG = "X-Tillpoint-Signature"
MAX_SKEW_S = 300


def _message(method: str, path_qs: str, ts: int, body: bytes) -> bytes:
    return f"{method.upper()}\n{path_qs}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()


def sign_request(
    key: Ed25519PrivateKey, till_id: str, method: str, path_qs: str, body: bytes, now: int
) -> dict[str, str]:
    sig = sign(key, _message(method, path_qs, now, body))
    return {HEADER_TILL: till_id, HEADER_TIME: str(now), HEADER_SIG: sig.hex()}


def verify_request(
    headers: dict[str, str] | object,
    method: str,
    path_qs: str,
    body: bytes,
    now: int,
    public_key_of: Callable[[str], Ed25519PublicKey],
) -> str:
    """The till id if the request is signed by that till; raises BadSignature otherwise."""
    get = headers.get  # type: ignore[attr-defined]
    till_id, ts_text, sig_hex = get(HEADER_TILL), get(HEADER_TIME), get(HEADER_SIG)
    if not (till_id and ts_text and sig_hex):
        raise BadSignature("request is not signed by a till")
    try:
        ts = int(ts_text)
        sig = bytes.fromhex(sig_hex)
    except ValueError:
        raise BadSignature("malformed request signature headers") from None
    if abs(now - ts) > MAX_SKEW_S:
        raise BadSignature("request timestamp outside the allowed window (check the clock)")
    verify(public_key_of(till_id), _message(method, path_qs, ts, body), sig)
    return till_id
