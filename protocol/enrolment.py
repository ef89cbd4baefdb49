"""Enrolment: the till proves it holds the private key of the public key it enrols.

The one-time enrolment token is the central's challenge: random, issued by the central,
good once. The till signs it together with its public key; the central verifies that
signature before it spends the token. So nobody enrols a key they cannot sign with, and a
proof cannot be replayed for another key or another token. Weak keys (protocol.weak_keys)
are refused before anything else: a signature "by" a small-order key proves nothing.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.signing import BadSignature, parse_public_key, public_key_hex, sign, verify
from protocol.weak_keys import weakness

_CONTEXT = b"tillpoint enrolment v1\n"


def _message(token: str, public_key: str) -> bytes:
    return _CONTEXT + token.encode() + b"\n" + public_key.lower().encode()


def prove(key: Ed25519PrivateKey, token: str) -> str:
    """The proof of possession the till sends with its public key (hex)."""
    return sign(key, _message(token, public_key_hex(key))).hex()


def check(public_key: str, token: str, proof: str) -> None:
    """Raises BadSignature unless `public_key` is sound and `proof` is its signature."""
    try:
        parsed = parse_public_key(public_key)  # 64 hex digits, or BadSignature
    except BadSignature as e:
        raise BadSignature(f"field 'public_key': {e}") from None
    if why := weakness(bytes.fromhex(public_key)):
        raise BadSignature(f"field 'public_key': weak public key refused: {why}")
    try:
        signature = bytes.fromhex(proof)
    except ValueError:
        raise BadSignature("field 'proof': proof of possession is not hex") from None
    try:
        verify(parsed, _message(token, public_key), signature)
    except BadSignature:
        raise BadSignature("field 'proof': proof of possession does not verify: sign the"
                           " enrolment token with the key being enrolled") from None
