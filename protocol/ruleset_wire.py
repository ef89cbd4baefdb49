"""The rule set as the central publishes it to tills: a document signed by the central."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.signing import sign, verify
from protocol.wire import pack, require, unpack


@dataclass(frozen=True)
class SignedRuleSet:
    version: int
    activates_at: str
    doc: dict[str, Any]


def encode_ruleset(key: Ed25519PrivateKey, rs: SignedRuleSet) -> bytes:
    body = pack({"version": rs.version, "activates_at": rs.activates_at, "doc": rs.doc})
    return pack({"body": body, "sig": sign(key, body)})


def decode_ruleset(data: bytes, central_key: Ed25519PublicKey,
                   unpack_body: Callable[[bytes], Any] = unpack) -> SignedRuleSet:
    """Raises BadSignature for a forged or tampered rule set, InvalidMessage if malformed.
    `unpack_body`: wire.unpack_in_steps in a worker thread beside an event loop."""
    outer = unpack(data)
    body_bytes = require(outer, "body", bytes)
    verify(central_key, body_bytes, require(outer, "sig", bytes))
    body = unpack_body(body_bytes)
    return SignedRuleSet(
        version=require(body, "version", int),
        activates_at=require(body, "activates_at", str),
        doc=require(body, "doc", dict),
    )
