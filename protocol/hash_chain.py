"""A hash chain: each record carries the hash of the one before it, so no record can be
edited, reordered or dropped without a break that anyone holding the records can find.

The till's journal (protocol.journal) and the central's audit log (central.audit) are such
chains. A record's hash is SHA-256 over the canonical msgpack of its body (protocol.wire),
the previous hash included; the first record of a chain links to a genesis hash derived
from the chain's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

from protocol.wire import pack


class Chained(Protocol):
    """A record of a chain: its number, the hash it links to, its own hash."""

    seq: int
    prev_hash: str
    hash: str

    def compute_hash(self) -> str: ...


def genesis_hash(name: str, kind: str = "epoch") -> str:
    """What the first record of the chain `name` links to. `kind` keeps chains of different
    sorts apart (a till's epoch, the central's audit log)."""
    return hashlib.sha256(f"tillpoint-{kind}:{name}".encode()).hexdigest()


def body_hash(body: dict[str, Any]) -> str:
    """The hash of a record's body (without its own hash): what `compute_hash` returns."""
    return hashlib.sha256(pack(body)).hexdigest()


def chain_ok(records: Iterable[Chained], prev_hash: str) -> str | None:
    """None if `records` chain on from `prev_hash` with good hashes, else what is wrong."""
    for r in records:
        if r.prev_hash != prev_hash:
            return f"entry {r.seq} does not chain to the entry before it"
        if r.compute_hash() != r.hash:
            return f"entry {r.seq} has a hash that does not match its content"
        prev_hash = r.hash
    return None
