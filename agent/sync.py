"""The sync client: push the journal up in signed batches, pull rule sets and customers down.

Stages are separate and each resumable: the outbox says what to send, the central's
acknowledged sequence (kept in meta) says where to start, and a crash at any point only
means the next run sends again what the central may already hold, which it ignores.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlite_utils

from agent import customers, journal
from agent.central_client import CentralClient, CentralError
from agent.store import get_meta, set_meta
from protocol.batches import Batch, encode_batch
from protocol.rules import compile_ruleset
from protocol.ruleset_wire import decode_ruleset
from protocol.signing import BadSignature
from protocol.wire import InvalidMessage, pack

log = logging.getLogger(__name__)

BATCH_ENTRIES = 200
MAX_BACKOFF_S = 60.0


@dataclass
class SyncState:
    last_push_ok: float | None = None  # unix time
    last_pull_ok: float | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt: float = 0.0  # monotonic; backoff while the central is unreachable
    revoked: bool = False
    ruleset_refused: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "last_push_ok": self.last_push_ok, "last_pull_ok": self.last_pull_ok,
            "last_error": self.last_error, "failures": self.failures,
            "revoked": self.revoked, "ruleset_refused": self.ruleset_refused,
        }


class SyncClient:
    def __init__(self, db: sqlite_utils.Database, client: CentralClient) -> None:
        self.db = db
        self.client = client
        self.state = SyncState()

    def _failed(self, e: CentralError) -> None:
        self.state.failures += 1
        self.state.last_error = str(e)
        if e.status == 403 and "revoked" in str(e):
            self.state.revoked = True
        delay = min(MAX_BACKOFF_S, 0.5 * 2 ** min(self.state.failures, 8))
        self.state.next_attempt = time.monotonic() + delay
        if self.state.failures == 1:
            log.warning("sync failed, backing off: %s", e)

    def _succeeded(self) -> None:
        if self.state.failures:
            log.info("sync recovered after %d failures", self.state.failures)
        self.state.failures = 0
        self.state.last_error = None
        self.state.next_attempt = 0.0

    def backing_off(self) -> bool:
        return time.monotonic() < self.state.next_attempt

    def acked_seq(self) -> int:
        return int(get_meta(self.db, "acked_seq", "0") or 0)

    async def push(self) -> int:
        """Send everything above the acknowledged sequence; returns the new acknowledgement."""
        while True:
            acked = self.acked_seq()
            entries = journal.entries_from(self.db, acked + 1, BATCH_ENTRIES)
            if not entries:
                return acked
            batch = Batch(self.client.identity.till_id, journal.epoch(self.db),
                          tuple(entries), datetime.now(UTC).isoformat(timespec="seconds"))
            data = encode_batch(self.client.identity.key, batch)
            try:
                answer = json.loads((await self.client.request("POST", "/sync/v1/batches",
                                                               data))[0])
            except CentralError as e:
                self._failed(e)
                raise
            self._succeeded()
            self.state.last_push_ok = time.time()
            new_acked = int(answer["acked_seq"])
            if answer.get("epoch") != batch.epoch:
                raise CentralError("central acknowledged another epoch")
            with self.db.atomic():
                set_meta(self.db, "acked_seq", str(new_acked))
                self.db.execute("DELETE FROM outbox WHERE seq <= ?", [new_acked])
            if new_acked <= acked:
                # No progress although we sent from what it holds: retry on the schedule.
                return new_acked

    async def pull_ruleset(self) -> int | None:
        """Fetch the central's rule set; activate it only if its signature verifies."""
        try:
            data, _ = await self.client.request("GET", "/sync/v1/ruleset")
        except CentralError as e:
            self._failed(e)
            raise
        try:
            rs = decode_ruleset(data, self.client.identity.central_key)
            compile_ruleset(rs.doc)
        except (BadSignature, InvalidMessage) as e:
            self.state.ruleset_refused = f"rule set refused: {e}"
            log.error("rule set from the central refused: %s", e)
            return None
        self.state.ruleset_refused = None
        current = self.db.execute("SELECT MAX(version) FROM rulesets").fetchone()[0]
        if current is None or rs.version > current:
            self.db.execute(
                "INSERT OR REPLACE INTO rulesets (version, activates_at, doc, received_at)"
                " VALUES (?, ?, ?, ?)",
                [rs.version, rs.activates_at, pack(rs.doc),
                 datetime.now(UTC).isoformat(timespec="seconds")],
            )
            log.info("rule set version %d received", rs.version)
        return rs.version

    async def pull_customers(self) -> int:
        """Fetch customer changes since our cursor; returns how many came."""
        count = 0
        while True:
            cursor = int(get_meta(self.db, "customer_cursor", "0") or 0)
            try:
                delta = await self.client.json("GET", f"/sync/v1/customers?since={cursor}")
            except CentralError as e:
                self._failed(e)
                raise
            self._succeeded()
            self.state.last_pull_ok = time.time()
            customers.apply_deltas(self.db, delta)
            count += len(delta["customers"])
            if not delta.get("more"):
                return count
