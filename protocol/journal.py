"""The till's journal entry as it travels to the central, and the hash chain that binds entries.

Every entry carries the hash of the one before it, so a till's history cannot be edited,
reordered or have entries dropped without the central noticing. The first entry of an
epoch chains to a hash derived from the epoch itself.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from protocol import bounds, cashiers, presence
from protocol.hash_chain import chain_ok, genesis_hash
from protocol.wire import UNDECODED, InvalidMessage, pack, require, unpack, unpack_map_skipping

__all__ = ["ENTRY_KINDS", "JournalEntry", "chain_ok", "genesis_hash", "new_receipt_id"]

ENTRY_KINDS = ("sale", "return")


def new_receipt_id(now: datetime) -> str:
    """32 hex digits: milliseconds since the epoch, then 80 random bits (UUIDv7's layout).

    Time-ordered ids make every index keyed by (till, receipt) grow at one end per till, so
    the central writes one index page per batch instead of one per receipt.
    """
    return f"{int(now.timestamp() * 1000):012x}{secrets.token_hex(10)}"


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
    # UNDECODED in an entry decoded with detail=False: the central's ingest never reads it.
    detail: Mapping[str, Any] = field(default_factory=dict)
    # Who sold or took the return back: the cashier's id as the POS sent it
    # (protocol.cashiers). None only in entries journalled before it was carried.
    cashier: str | None = None
    # How the customer proved to be at the checkout (protocol.presence), on any member's
    # sale where they did; one that spends points must have it, and the central re-checks
    # it. None when nobody proved it: the card number or id was typed (the central's fraud
    # rules count those per cashier).
    presence: Mapping[str, Any] | None = None
    hash: str = ""

    def body(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() deep-copies `detail` (hundreds of nodes per receipt),
        # which cost more than the rest of ingest together. Entries are never mutated.
        body = {name: getattr(self, name) for name in _BODY_FIELDS}
        for name in _OMITTED_WHEN_NONE:
            # Left out when absent, so entries journalled before the field existed keep
            # their bytes, and with them their hashes and the chain.
            if body[name] is None:
                del body[name]
        return body

    def encoded_body(self) -> bytes:
        """The canonical bytes the entry's hash covers, and what travels in a batch."""
        if self.detail is UNDECODED:
            # Its bytes are the ones it was decoded from (Batch.encoded); re-encoding it
            # without its detail would give other bytes and another hash.
            raise ValueError("an entry decoded without its detail cannot be re-encoded")
        return pack(self.body())

    def compute_hash(self) -> str:
        return hashlib.sha256(self.encoded_body()).hexdigest()

    def to_wire(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    @classmethod
    def from_encoded_body(cls, data: bytes, *, detail: bool = True) -> JournalEntry:
        """Decode an entry as a batch carries it; its hash is that of these very bytes.

        Hashing the bytes received, rather than re-encoding what they decode to, binds the
        entry to exactly what the till signed and saves the central a canonical re-encoding
        of every receipt; the bytes are stored as they came.

        With `detail=False` the detail is checked to be a map but left UNDECODED: decoding
        it was most of the central's cost per entry, and only the re-pricing job reads it,
        from the stored bytes. The hash covers it all the same.
        """
        if not isinstance(data, bytes):
            raise InvalidMessage("entry is not encoded as bytes")
        obj = unpack(data) if detail else unpack_map_skipping(data, "detail")
        if not isinstance(obj, dict) or "hash" in obj:
            raise InvalidMessage("entry body is not a map without a hash")
        return cls.from_wire({**obj, "hash": hashlib.sha256(data).hexdigest()})

    @classmethod
    def from_wire(cls, obj: Any) -> JournalEntry:
        """Decode and check one entry; raises InvalidMessage naming the bad field."""
        if not isinstance(obj, dict):
            raise InvalidMessage("entry is not a map")
        if not _FIELD_NAMES.issuperset(obj):
            unknown = set(obj) - _FIELD_NAMES
            raise InvalidMessage(f"entry has unknown fields {sorted(unknown)}")
        # Each check has a fast test for the common, well-formed case and falls back to
        # require() only to raise its error: checking fields was a third of the central's
        # decoding time, and the messages must stay those require() gives.
        for k, within in _INT_FIELDS.items():
            v = obj.get(k)
            if type(v) is not int or not within.lo <= v <= within.hi:
                try:
                    within.check(require(obj, k, int), k)
                except bounds.OutOfBounds as e:
                    raise InvalidMessage(str(e)) from None
        # isprintable() is the fast test; bounds.text (no control characters) decides.
        for k in _STR_FIELDS:
            v = obj.get(k)
            if type(v) is not str or len(v) > bounds.MAX_TEXT or not v.isprintable():
                _text(obj, k)
        for k in ("customer_id", "original_receipt_id"):
            v = obj.get(k)
            if v is not None and (type(v) is not str or len(v) > bounds.MAX_TEXT
                                  or not v.isprintable()):
                _text(obj, k)
        if obj.get("cashier") is not None:
            try:
                cashiers.check(obj["cashier"])
            except ValueError as e:
                raise InvalidMessage(f"field 'cashier': {e}") from None
        if obj.get("presence") is not None:
            try:
                presence.check(obj["presence"])
            except presence.BadProof as e:
                raise InvalidMessage(f"field 'presence': {e}") from None
        if obj["kind"] not in ENTRY_KINDS:
            raise InvalidMessage(f"unknown entry kind {obj['kind']!r}")
        if obj["seq"] < 1:
            raise InvalidMessage("field 'seq' must be at least 1")
        _instant(obj["at"], "at")
        lots = obj.get("lots", [])
        if not isinstance(lots, list) or len(lots) > MAX_LOTS:
            raise InvalidMessage(f"field 'lots' must be a list of at most {MAX_LOTS} lots")
        for i, lot in enumerate(lots):
            if not (type(lot) is dict and bounds.POINTS.holds(lot.get("points"))
                    and lot["points"] > 0
                    and type(lot.get("activates")) is str and type(lot.get("expires")) is str):
                _lot(lot, i)
            _instant(lot["activates"], f"lots[{i}].activates")
            _instant(lot["expires"], f"lots[{i}].expires")
        if sum(lot["points"] for lot in lots) != obj["earned"]:
            raise InvalidMessage("field 'earned' differs from the sum of its lots")
        if not isinstance(obj.get("detail", {}), dict) and obj["detail"] is not UNDECODED:
            raise InvalidMessage("field 'detail' has the wrong type")
        return cls._from_checked(obj)

    @classmethod
    def _from_checked(cls, obj: dict[str, Any]) -> JournalEntry:
        """cls(**obj), without the frozen dataclass's __init__: its object.__setattr__ per
        field was half of what decoding an entry cost the central. Same fields, defaults
        and equality; a map that lacks a required field still goes through __init__, so it
        fails as it always did."""
        if not _REQUIRED.issubset(obj):
            return cls(**obj)
        entry = object.__new__(cls)
        values = entry.__dict__
        values.update(_DEFAULTS)
        for name, factory in _FACTORIES:
            if name not in obj:
                values[name] = factory()  # a fresh list or map for each entry
        values.update(obj)
        return entry


_BODY_FIELDS = tuple(f.name for f in fields(JournalEntry) if f.name != "hash")
_OMITTED_WHEN_NONE = ("cashier", "presence")
_FIELD_NAMES = frozenset(f.name for f in fields(JournalEntry))
_REQUIRED = frozenset(
    f.name for f in fields(JournalEntry) if f.default is MISSING and f.default_factory is MISSING
)
_DEFAULTS = {f.name: f.default for f in fields(JournalEntry) if f.default is not MISSING}
_FACTORIES = tuple(
    (f.name, f.default_factory) for f in fields(JournalEntry) if f.default_factory is not MISSING
)
# Each integer within its bounds (protocol.bounds): whatever the till signed, what the
# central stores and adds up must fit its columns and sums.
_INT_FIELDS = {"seq": bounds.COUNTER, "ruleset_version": bounds.COUNTER,
               "total": bounds.MONEY, "fiscal_doc": bounds.COUNTER,
               "earned": bounds.POINTS, "redeemed": bounds.POINTS,
               "clawback": bounds.POINTS, "refund": bounds.POINTS}
_STR_FIELDS = ("epoch", "prev_hash", "kind", "receipt_id", "at", "store", "hash")
MAX_LOTS = 1000
_EARLIEST = 1970  # no till sold anything before; "never expires" is 9999-12-31


def _text(obj: dict[str, Any], key: str) -> None:
    """Raise InvalidMessage for a field that is not bounded text (the slow path)."""
    value = require(obj, key, str)
    try:
        bounds.text(value, key)
    except bounds.OutOfBounds as e:
        raise InvalidMessage(str(e)) from None


def _lot(lot: Any, i: int) -> None:
    """Raise InvalidMessage naming what is wrong with lot `i` (the slow path)."""
    try:
        if require(lot, "points", int) <= 0 or lot["points"] > bounds.MAX_POINTS:
            raise InvalidMessage(f"points must be between 1 and {bounds.MAX_POINTS}")
        require(lot, "activates", str)
        require(lot, "expires", str)
    except InvalidMessage as e:
        raise InvalidMessage(f"field 'lots[{i}]': {e}") from None


def _instant(value: str, field: str) -> None:
    try:
        at = datetime.fromisoformat(value)
        # Comparing instants converts them to UTC, which fails past datetime's ends.
        at = at.replace(tzinfo=at.tzinfo or UTC).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidMessage(f"field {field!r} must be an ISO 8601 date and time") from None
    if at.year < _EARLIEST:
        raise InvalidMessage(f"field {field!r} must not be before {_EARLIEST}")
