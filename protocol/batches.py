"""Signed batches of journal entries, till → central, and the central's answer.

The envelope is `{"body": <msgpack bytes>, "sig": <Ed25519 signature of body>}`; the body
names the till, so the central finds the key to check it with, and it is verified before
anything in it is trusted beyond that name. Each entry travels as its own canonical bytes,
whose SHA-256 is the entry's hash: the central checks the chain without re-encoding
anything and stores the bytes as they came.

Bounded: at most MAX_BATCH_ENTRIES entries and MAX_BATCH_BYTES bytes, so one request never
holds the central's write lock for long; a till far behind sends several.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.journal import JournalEntry
from protocol.signing import BadSignature, sign, verify
from protocol.wire import InvalidMessage, pack, require, unpack, unpack_map_skipping

BATCH_VERSION = 2
MAX_BATCH_ENTRIES = 1000
MAX_BATCH_BYTES = 3 * 1024 * 1024
# Room for the envelope around the entries: names, signature, msgpack framing.
ENVELOPE_BYTES = 4096


@dataclass(frozen=True)
class Batch:
    till_id: str
    epoch: str
    entries: tuple[JournalEntry, ...]
    sent_at: str
    # The entries' bytes as received (decode_batch fills it; a sender need not).
    encoded: tuple[bytes, ...] = ()

    @property
    def first_seq(self) -> int:
        return self.entries[0].seq

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq


class InvalidEntry(InvalidMessage):
    """An entry of a batch whose signature verified does not fit the journal's schema: the
    till that signed it has a bug, or its key is in other hands. `seq` is the entry's, as
    far as it could be read."""

    def __init__(self, seq: int | None, problem: str) -> None:
        super().__init__(f"entry {seq}: {problem}" if seq is not None else problem)
        self.seq = seq


def _entry(data: Any, detail: bool) -> JournalEntry:
    try:
        return JournalEntry.from_encoded_body(data, detail=detail)
    except InvalidMessage as e:
        raise InvalidEntry(_seq_of(data), str(e)) from None


def _seq_of(data: Any) -> int | None:
    """The sequence number of an entry that did not decode, if it can be read at all."""
    try:
        seq = unpack_map_skipping(data, "detail").get("seq")
    except Exception:  # whatever the bytes are, this is only for the message
        return None
    return seq if type(seq) is int and 0 < seq <= 2**53 else None


def encode_batch(key: Ed25519PrivateKey, batch: Batch) -> bytes:
    body = pack(
        {
            "v": BATCH_VERSION,
            "till": batch.till_id,
            "epoch": batch.epoch,
            "sent_at": batch.sent_at,
            "entries": list(batch.encoded or (e.encoded_body() for e in batch.entries)),
        }
    )
    return pack({"body": body, "sig": sign(key, body)})


def decode_batch(data: bytes, public_key_of: Callable[[str], Ed25519PublicKey], *,
                 detail: bool = True) -> Batch:
    """Verify and decode; raises InvalidMessage, BadSignature, or what `public_key_of` raises.

    `detail=False` leaves each entry's detail undecoded (JournalEntry.from_encoded_body).
    """
    if len(data) > MAX_BATCH_BYTES:
        raise InvalidMessage(f"batch of {len(data)} bytes exceeds {MAX_BATCH_BYTES}")
    outer = unpack(data, max_bytes=MAX_BATCH_BYTES)
    body_bytes = require(outer, "body", bytes)
    sig = require(outer, "sig", bytes)
    body = unpack(body_bytes, max_bytes=MAX_BATCH_BYTES)
    if require(body, "v", int) != BATCH_VERSION:
        raise InvalidMessage(f"unsupported batch version {body['v']}")
    till_id = require(body, "till", str)
    verify(public_key_of(till_id), body_bytes, sig)
    epoch = require(body, "epoch", str)
    raw_entries = require(body, "entries", list)
    if not raw_entries:
        raise InvalidMessage("batch has no entries")
    if len(raw_entries) > MAX_BATCH_ENTRIES:
        raise InvalidMessage(f"batch has more than {MAX_BATCH_ENTRIES} entries")
    entries = tuple(_entry(e, detail) for e in raw_entries)
    for prev, cur in itertools.pairwise(entries):
        if cur.seq != prev.seq + 1:
            raise InvalidEntry(cur.seq, "batch entries are not consecutive")
    if any(e.epoch != epoch for e in entries):
        raise InvalidEntry(None, "batch mixes epochs")
    return Batch(till_id, epoch, entries, require(body, "sent_at", str), tuple(raw_entries))


__all__ = [
    "BadSignature",
    "Batch",
    "InvalidEntry",
    "InvalidMessage",
    "decode_batch",
    "encode_batch",
]
