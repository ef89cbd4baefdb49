"""The till's journal entry as it travels to the central, and the hash chain that binds entries.

Every entry carries the hash of the one before it, so a till's history cannot be edited,
reordered or have entries dropped without the central noticing. The first entry of an
epoch chains to a hash derived from the epoch itself.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from protocol.wire import InvalidMessage, pack, require, unpack

ENTRY_KINDS = ("sale", "return")


def new_receipt_id(now: datetime) -> str:
    """32 hex digits: milliseconds since the epoch, then 80 random bits (UUIDv7's layout).

    Time-ordered ids make every index keyed by (till, receipt) grow at one end per till, so
    the central writes one index page per batch instead of one per receipt.
    """
    return f"{int(now.timestamp() * 1000):012x}{secrets.token_hex(10)}"


def genesis_hash(epoch: str) -> str:
    return hashlib.sha256(b"tillpoint-epoch:" + epoch.encode()).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    epoch: str
    prev_hash: str
    kind: str
    receipt_id: str
    at: str  # ISO 8601, UTC
    store: str
    customer_id: str | None
    ruleset_version: int
    total: int  # kopecks charged (sale) or refunded (return)
    fiscal_doc: int
    earned: int = 0
    redeemed: int = 0
    clawback: int = 0
    refund: int = 0
    original_receipt_id: str | None = None
    # Earned lots: [{"points", "activates", "expires"}]; dates ISO.
    lots: list[dict[str, Any]] = field(default_factory=list)
    # What the rules engine decided (Settlement or ReturnOutcome as a dict) and the lines.
    detail: dict[str, Any] = field(default_factory=dict)
    hash: str = ""

    def body(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() deep-copies `detail` (hundreds of nodes per receipt),
        # which cost more than the rest of ingest together. Entries are never mutated.
        return {name: getattr(self, name) for name in _BODY_FIELDS}

    def encoded_body(self) -> bytes:
        """The canonical bytes the entry's hash covers, and what travels in a batch."""
        return pack(self.body())

    def compute_hash(self) -> str:
        return hashlib.sha256(self.encoded_body()).hexdigest()

    def to_wire(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    @classmethod
    def from_encoded_body(cls, data: bytes) -> JournalEntry:
        """Decode an entry as a batch carries it; its hash is that of these very bytes.

        Hashing the bytes received, rather than re-encoding what they decode to, binds the
        entry to exactly what the till signed and saves the central a canonical re-encoding
        of every receipt; the bytes are stored as they came.
        """
        if not isinstance(data, bytes):
            raise InvalidMessage("entry is not encoded as bytes")
        obj = unpack(data)
        if not isinstance(obj, dict) or "hash" in obj:
            raise InvalidMessage("entry body is not a map without a hash")
        return cls.from_wire({**obj, "hash": hashlib.sha256(data).hexdigest()})

    @classmethod
    def from_wire(cls, obj: Any) -> JournalEntry:
        """Decode and check one entry; raises InvalidMessage naming the bad field."""
        if not isinstance(obj, dict):
            raise InvalidMessage("entry is not a map")
        unknown = set(obj) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidMessage(f"entry has unknown fields {sorted(unknown)}")
        ints = (
            "seq",
            "ruleset_version",
            "total",
            "fiscal_doc",
            "earned",
            "redeemed",
            "clawback",
            "refund",
        )
        strs = ("epoch", "prev_hash", "kind", "receipt_id", "at", "store", "hash")
        for k in ints:
            if require(obj, k, int) < 0:
                raise InvalidMessage(f"field {k!r} must not be negative")
        for k in strs:
            require(obj, k, str)
        for k in ("customer_id", "original_receipt_id"):
            if obj.get(k) is not None:
                require(obj, k, str)
        if obj["kind"] not in ENTRY_KINDS:
            raise InvalidMessage(f"unknown entry kind {obj['kind']!r}")
        if obj["seq"] < 1:
            raise InvalidMessage("field 'seq' must be at least 1")
        lots = obj.get("lots", [])
        if not isinstance(lots, list):
            raise InvalidMessage("field 'lots' has the wrong type")
        for lot in lots:
            if require(lot, "points", int) <= 0:
                raise InvalidMessage("a lot must have positive points")
            require(lot, "activates", str)
            require(lot, "expires", str)
        if sum(lot["points"] for lot in lots) != obj["earned"]:
            raise InvalidMessage("field 'earned' differs from the sum of its lots")
        if not isinstance(obj.get("detail", {}), dict):
            raise InvalidMessage("field 'detail' has the wrong type")
        return cls(**obj)


_BODY_FIELDS = tuple(f.name for f in fields(JournalEntry) if f.name != "hash")


def chain_ok(entries: list[JournalEntry], prev_hash: str) -> str | None:
    """None if `entries` chain on from `prev_hash` with good hashes, else what is wrong."""
    for e in entries:
        if e.prev_hash != prev_hash:
            return f"entry {e.seq} does not chain to the entry before it"
        if e.compute_hash() != e.hash:
            return f"entry {e.seq} has a hash that does not match its content"
        prev_hash = e.hash
    return None
