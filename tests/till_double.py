"""A till made of protocol parts only, for driving the central's sync API in tests.

It signs real batches with a real key and builds a real hash chain; tests bend one thing
at a time (a signature, a hash, a sequence number) to see the central refuse it.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import enrolment
from protocol.batches import Batch, encode_batch
from protocol.journal import JournalEntry, genesis_hash
from protocol.signing import public_key_hex


class TestTill:
    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.till_id = ""
        self.epoch = uuid.uuid4().hex
        self.entries: list[JournalEntry] = []

    @property
    def public_key(self) -> str:
        return public_key_hex(self.key)

    def enrolment(self, token: str) -> dict[str, str]:
        """The body of an enrolment request for this till's key."""
        return {"token": token, "public_key": self.public_key,
                "proof": enrolment.prove(self.key, token)}

    def sale(self, customer_id: str | None, *, earned: int = 0, redeemed: int = 0,
             total: int = 10000, at: datetime | None = None, window_days: int = 14,
             receipt_id: str | None = None,
             presence: dict[str, Any] | None = None) -> JournalEntry:
        """`presence`: how the customer proved to be there (protocol.presence)."""
        at = at or datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
        lots = []
        if earned:
            lots = [{"points": earned,
                     "activates": (at + timedelta(days=window_days)).isoformat(),
                     "expires": (at + timedelta(days=window_days + 365)).isoformat()}]
        return self._append(JournalEntry(
            seq=0, epoch="", prev_hash="", kind="sale",
            receipt_id=receipt_id or uuid.uuid4().hex, at=at.isoformat(), store="s1",
            customer_id=customer_id, ruleset_version=1, total=total,
            fiscal_doc=len(self.entries) + 1, earned=earned, redeemed=redeemed, lots=lots,
            presence=presence))

    def return_(self, customer_id: str | None, original: str, *, clawback: int = 0,
                refund: int = 0, total: int = 1000) -> JournalEntry:
        return self._append(JournalEntry(
            seq=0, epoch="", prev_hash="", kind="return", receipt_id=uuid.uuid4().hex,
            at=datetime(2026, 11, 23, 11, 0, tzinfo=UTC).isoformat(), store="s1",
            customer_id=customer_id, ruleset_version=1, total=total,
            fiscal_doc=len(self.entries) + 1, clawback=clawback, refund=refund,
            original_receipt_id=original))

    def _append(self, draft: JournalEntry) -> JournalEntry:
        prev = self.entries[-1].hash if self.entries else genesis_hash(self.epoch)
        e = dataclasses.replace(draft, seq=len(self.entries) + 1, epoch=self.epoch,
                                prev_hash=prev)
        e = dataclasses.replace(e, hash=e.compute_hash())
        self.entries.append(e)
        return e

    def batch(self, first: int = 1, last: int | None = None,
              key: Ed25519PrivateKey | None = None,
              entries: list[JournalEntry] | None = None) -> bytes:
        chosen = entries or self.entries[first - 1:last]
        return encode_batch(key or self.key, Batch(self.till_id, self.epoch, tuple(chosen),
                                                   "2026-11-23T10:00:00+00:00"))
