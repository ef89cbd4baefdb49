"""The sync client: push the journal up in signed batches, pull rule sets and customers down.

Stages are separate and each resumable: the outbox says what to send, the central's
acknowledged sequence (kept in meta) says where to start, and a crash at any point only
means the next run sends again what the central may already hold, which it ignores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlite_utils

from agent import customers, epochs, journal, offline_caps, retry_policy, store
from agent.central_client import CentralClient, CentralError
from agent.rules_cache import (
    CAMPAIGNS_IN_BODY,
    Received,
    RulesCache,
    collector_paused,
    prepare,
    release_stepwise,
)
from agent.store import get_meta, set_meta
from protocol import ruleset_delta
from protocol.batches import ENVELOPE_BYTES, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, Batch, encode_batch
from protocol.journal import JournalEntry
from protocol.rules import CompiledCampaigns, RuleSetError
from protocol.ruleset_wire import SignedRuleSet, decode_ruleset
from protocol.signing import BadSignature
from protocol.wire import (
    InvalidMessage,
    json_in_steps,
    map_value_bytes,
    unpack,
    unpack_in_steps,
)

log = logging.getLogger(__name__)

# Storing customers: each step on the event loop aims at this long, in chunks of so many.
# A receipt being priced may wait behind one step: with a 30-line receipt taking about
# 5 ms, a longer step would put such a receipt over 10 ms whenever deltas arrive.
CHUNK_TARGET_S = 0.003
MIN_CHUNK, MAX_CHUNK = 10, 1000
MAX_BACKOFF_S = retry_policy.DEFAULT_CAP_S
# A batch the central refused as malformed (400, 413, 422) would be refused again: the till
# holds it, says so in its status, and offers it again only this often (or after a restart,
# which is how a fixed agent or central comes in), instead of every few seconds.
HELD_RETRY_S = 900.0
HOLD_STATUSES = (400, 413, 422)


@dataclass
class SyncState:
    last_push_ok: float | None = None  # unix time
    last_pull_ok: float | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt: float = 0.0  # monotonic; backoff while the central is unreachable
    revoked: bool = False
    ruleset_refused: str | None = None
    # {"since", "reason"} while the central holds this till's credits (central.quarantine):
    # it keeps selling, with redemption caps of 0, until head office releases it.
    quarantine: dict | None = None
    # {"since", "first_seq", "reason"} while the central refuses this till's next batch as
    # malformed: the journal waits whole (its chain cannot skip an entry), selling goes on.
    push_held: dict | None = None
    # Customer pulls: "received" since start, "caught_up" once a pull has come to the end;
    # a new till's first sync ("initial_sync_s") brings every member.
    customers: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "last_push_ok": self.last_push_ok, "last_pull_ok": self.last_pull_ok,
            "last_error": self.last_error, "failures": self.failures,
            "revoked": self.revoked, "ruleset_refused": self.ruleset_refused,
            "quarantine": self.quarantine, "push_held": self.push_held,
            "customers": self.customers,
        }


class SyncClient:
    def __init__(self, db: sqlite_utils.Database, client: CentralClient, *,
                 max_backoff_s: float = MAX_BACKOFF_S,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rules: RulesCache | None = None,
                 rng: random.Random | None = None,
                 held_retry_s: float = HELD_RETRY_S) -> None:
        self.db = db
        self.client = client
        self.rules = rules or RulesCache(db, clock)  # the agent's own, so a swap is seen
        self.max_backoff_s = max_backoff_s
        self.held_retry_s = held_retry_s
        self._held_until = 0.0  # monotonic: when a held batch is offered again
        self.monotonic = monotonic  # the backoff's clock: tests move it instead of waiting
        self.rng = rng or random.Random()  # the backoff's jitter: tests seed it
        self.clock = clock  # wall time of the last contact, for the offline caps
        held = get_meta(db, "push_held")
        self.state = SyncState(revoked=get_meta(db, "revoked") is not None,
                               quarantine=quarantine_of(db),
                               push_held=json.loads(held) if held else None)
        # Compared with the central's position once per start, and again after a refusal.
        self.position_checked = False
        self._customer_pull: asyncio.Future[int] | None = None
        self._chunk = customers.CHUNK  # customers stored per step (see _apply)

    def _failed(self, e: CentralError) -> None:
        self.state.failures += 1
        self.state.last_error = str(e)
        if e.status == 403 and "revoked" in str(e) and not self.state.revoked:
            # Kept in the store: store IT sees it in `agent status` even after a restart.
            # The journal stays whole; selling goes on, and nothing is sent until the till
            # is enrolled again.
            self.state.revoked = True
            set_meta(self.db, "revoked", str(e))
            log.error("this till's enrolment was revoked at the central: %s", e)
        delay = retry_policy.next_wait(self.state.failures, self.max_backoff_s, self.rng,
                                       e.retry_after_s)
        self.state.next_attempt = self.monotonic() + delay
        if self.state.failures == 1:
            log.warning("sync failed, backing off: %s", e)

    def _succeeded(self) -> None:
        with store.without_fsync(self.db):  # a lost contact time only tightens the caps
            offline_caps.mark_contact(self.db, self.clock())
        if self.state.revoked:
            self.state.revoked = False  # enrolled again at the central
            self.db.execute("DELETE FROM meta WHERE key = 'revoked'")
        if self.state.failures:
            log.info("sync recovered after %d failures", self.state.failures)
        self.state.failures = 0
        self.state.last_error = None
        self.state.next_attempt = 0.0

    def backing_off(self) -> bool:
        return self.monotonic() < self.state.next_attempt

    def acked_seq(self) -> int:
        return int(get_meta(self.db, "acked_seq", "0") or 0)

    def _set_acked(self, acked: int) -> None:
        # Outbox rows go only at or below what the central acknowledged.
        with self.db.atomic():
            set_meta(self.db, "acked_seq", str(acked))
            self.db.execute("DELETE FROM outbox WHERE epoch = ? AND seq <= ?",
                            [journal.epoch(self.db), acked])

    async def check_epoch(self) -> None:
        """Find out whether this database was restored, and if so go on in a new epoch."""
        ep = journal.epoch(self.db)
        hi, _ = journal.last(self.db)
        while True:
            lo = max(1, hi - epochs.PROBE + 1)
            try:
                answer = await self.client.json(
                    "GET", f"/sync/v1/position?epoch={ep}&from={lo}&to={max(hi, lo)}")
            except CentralError as e:
                self._failed(e)
                raise
            pos = epochs.Position.from_json(answer)
            verdict = epochs.judge(self.db, pos, lo)
            if verdict.restored and verdict.keep_until == lo - 1 and lo > 1 and pos.hashes:
                hi = lo - 1  # every entry compared differs: the fork is further back
                continue
            break
        if verdict.restored:
            reason = (f"database restored: the central holds entry {pos.acked_seq} of epoch"
                      f" {ep[:8]}, this journal diverges after entry {verdict.keep_until}")
            epochs.start_new_epoch(self.db, verdict.keep_until, reason)
        else:
            self._set_acked(verdict.acked_seq)
        self.position_checked = True
        await self.redact_acknowledged()

    async def redact_acknowledged(self) -> int:
        """Cut personal values out of the entries the central has acknowledged (it keeps
        their signed bytes sealed), a bounded step at a time so the POS API is served in
        between (agent.journal.redact_acknowledged); returns how many were redacted."""
        total = 0
        while True:
            count, more = journal.redact_acknowledged(self.db, self.acked_seq())
            total += count
            if not more:
                return total
            await asyncio.sleep(0)

    def _hold(self, first_seq: int, e: CentralError) -> None:
        """The central refused the batch as malformed: hold it, say so, offer it rarely."""
        self._held_until = self.monotonic() + self.held_retry_s
        if self.state.push_held and self.state.push_held.get("first_seq") == first_seq:
            return  # still the same: logged and stored already
        self.state.push_held = {"since": self.clock().isoformat(timespec="seconds"),
                                "first_seq": first_seq, "reason": str(e)}
        set_meta(self.db, "push_held", json.dumps(self.state.push_held))
        log.error("the central refused the batch from entry %d: %s; the journal is held (and"
                  " selling goes on) until it is accepted; offered again every %.0f s",
                  first_seq, e, self.held_retry_s)

    def _release_hold(self) -> None:
        if self.state.push_held is not None:
            log.warning("the central accepted the held batch: the journal flows again")
            self.db.execute("DELETE FROM meta WHERE key = 'push_held'")
            self.state.push_held = None

    async def push(self) -> int:
        """Send everything above the acknowledged sequence; returns the new acknowledgement.

        While a refused batch is held, sends nothing until it is time to offer it again."""
        if self.state.push_held and self.monotonic() < self._held_until:
            return self.acked_seq()
        if not self.position_checked:
            await self.check_epoch()
        while True:
            acked = self.acked_seq()
            readable, bad = journal.sendable_from(self.db, acked + 1, MAX_BATCH_ENTRIES)
            if not readable and bad:
                # An entry of this till's own journal that the central would refuse: held
                # here, after the entries before it went.
                refused = CentralError(f"this till's journal {bad}", 422)
                self._hold(acked + 1, refused)
                raise refused
            entries, encoded = _bounded(readable)
            if not entries:
                return acked
            batch = Batch(self.client.identity.till_id, journal.epoch(self.db),
                          tuple(entries), datetime.now(UTC).isoformat(timespec="seconds"),
                          tuple(encoded))
            data = encode_batch(self.client.identity.key, batch)
            try:
                answer = json.loads((await self.client.request("POST", "/sync/v1/batches",
                                                               data))[0])
            except CentralError as e:
                if e.status == 409:
                    self.position_checked = False  # a conflict: compare positions again
                if e.status in HOLD_STATUSES:
                    # Not the link's fault: pulls go on, only this batch waits.
                    self._hold(batch.first_seq, e)
                    raise
                self._failed(e)
                raise
            self._succeeded()
            self._release_hold()
            self.state.last_push_ok = time.time()
            new_acked = int(answer["acked_seq"])
            if answer.get("epoch") != batch.epoch:
                raise CentralError("central acknowledged another epoch")
            if new_acked > batch.last_seq and new_acked > journal.last(self.db)[0]:
                # The central holds more of this epoch than this journal has: restored.
                self.position_checked = False
                await self.check_epoch()
                continue
            self._set_acked(new_acked)
            await self.redact_acknowledged()
            if new_acked <= acked:
                # No progress although we sent from what it holds: retry on the schedule.
                return new_acked

    async def pull_ruleset(self) -> int | None:
        """Fetch the central's rule set if it has a newer one; store it only if its signature
        verifies and it compiles. Verifying and compiling run in a worker thread, and the
        compiled set is swapped in in one step (agent.rules_cache): the POS API never waits."""
        have = self.rules.version()
        # Holding a version, the till asks for what changed since (protocol.ruleset_delta).
        data, ctype = await self._ruleset_request(f"have={have}&delta=1" if have else "have=0")
        if not data:
            self.state.ruleset_refused = None
            return have  # not modified
        try:
            if ctype == ruleset_delta.CONTENT_TYPE and have:
                base = self.rules.stored(have)
                try:
                    received = await asyncio.to_thread(self._rebuilt, data, have, base,
                                                       self.rules.known_campaigns())
                except ruleset_delta.DeltaMismatch as e:
                    log.warning("rule-set delta not applied (%s): fetching it whole", e)
                    data, _ = await self._ruleset_request("have=0")
                    received = await asyncio.to_thread(self._verified, data,
                                                       self.rules.known_campaigns())
            else:
                received = await asyncio.to_thread(self._verified, data,
                                                   self.rules.known_campaigns())
        except (BadSignature, InvalidMessage, RuleSetError) as e:
            self.state.ruleset_refused = f"rule set refused: {e}"
            log.error("rule set from the central refused: %s", e)
            return None
        self.state.ruleset_refused = None
        if await self.rules.add(received):
            log.info("rule set version %d received, in effect from %s", received.version,
                     received.activates_at)
        return received.version

    async def _ruleset_request(self, query: str) -> tuple[bytes, str]:
        try:
            return await self.client.request("GET", f"/sync/v1/ruleset?{query}")
        except CentralError as e:
            self._failed(e)
            raise

    def _rebuilt(self, data: bytes, have: int, base: bytes | None,
                 known: CompiledCampaigns | None) -> Received:
        """A delta verified and applied to the stored document of version `have` (in a
        worker thread); DeltaMismatch unless it rebuilds what the central signed."""
        with collector_paused():
            delta = ruleset_delta.decode(data, self.client.identity.central_key)
            if delta.base != have or base is None:
                raise ruleset_delta.DeltaMismatch(
                    f"it is from version {delta.base}; this till holds {have}")
            held = unpack_in_steps(base, depth=2, encoded=CAMPAIGNS_IN_BODY[1:])
            doc, packed = ruleset_delta.apply(held["campaigns"], delta)
            received = prepare(SignedRuleSet(delta.version, delta.activates_at, doc), packed,
                               known)
            holder = [doc, held]
            del doc, held
            release_stepwise(holder)
        return received

    def _verified(self, data: bytes, known: CompiledCampaigns | None) -> Received:
        """Verify, decode and compile: in a worker thread, in steps that leave the event loop
        its turns (see agent.rules_cache). Campaigns the till's newest version carried in
        the same bytes are neither decoded nor compiled again."""
        with collector_paused():
            rs = decode_ruleset(data, self.client.identity.central_key,
                                lambda body: unpack_in_steps(body, encoded=CAMPAIGNS_IN_BODY))
            # The document as the central encoded it, stored without encoding it again.
            packed = map_value_bytes(unpack(data)["body"], "doc")
            received = prepare(rs, packed, known)
            holder = [rs.doc]
            del rs
            release_stepwise(holder)  # the decoded document: a few hundred thousand objects
        return received

    def _quarantine(self, state: dict | None) -> None:
        if state == self.state.quarantine:
            return
        if state:
            log.error("the central has quarantined this till (%s): points earned here are"
                      " held and none may be spent until head office releases it",
                      state.get("reason"))
            set_meta(self.db, "quarantine", json.dumps(state))
        else:
            log.warning("the central has released this till from quarantine")
            self.db.execute("DELETE FROM meta WHERE key = 'quarantine'")
        self.state.quarantine = state

    async def pull_customers(self) -> int:
        """Fetch customer changes since our cursor; returns how many came. One pull at a time:
        a caller arriving during a pull (a POS asking about an unknown card) joins it."""
        if self._customer_pull is None or self._customer_pull.done():
            self._customer_pull = asyncio.ensure_future(self._pull_customers())
        return await asyncio.shield(self._customer_pull)

    async def stop(self) -> None:
        """Give up a customer pull under way (the page being stored is stored again)."""
        if self._customer_pull is not None and not self._customer_pull.done():
            self._customer_pull.cancel()
            with contextlib.suppress(asyncio.CancelledError, CentralError):
                await self._customer_pull

    def customers_pulling(self) -> bool:
        return self._customer_pull is not None and not self._customer_pull.done()

    async def _pull_customers(self) -> int:
        progress = self.state.customers
        initial = int(get_meta(self.db, "customer_cursor", "0") or 0) == 0
        started = time.monotonic()
        count = 0
        fetch = asyncio.ensure_future(self._fetch_customers(
            int(get_meta(self.db, "customer_cursor", "0") or 0)))
        # In a pull of many pages, copying the log into the database (a checkpoint, with its
        # fsync) would fall on the commit of some chunk, on the event loop: a worker thread
        # does it instead.
        path = store.path_of(self.db)
        many_pages = False
        checkpointing: asyncio.Future[None] | None = None
        try:
            while True:
                delta, answered_at = await fetch
                if delta.get("more"):
                    # The next page comes while this one is stored: the central builds it
                    # on the other core.
                    fetch = asyncio.ensure_future(self._fetch_customers(int(delta["cursor"])))
                    if path and not many_pages:
                        many_pages = True
                        self.db.execute("PRAGMA wal_autocheckpoint=0")
                await self._apply(delta)
                # Stored: what the central had when it answered is what the till holds now
                # (a status reader takes this as "a pull after my change is in").
                self.state.last_pull_ok = answered_at
                count += len(delta["customers"])
                progress["received"] = progress.get("received", 0) + len(delta["customers"])
                if many_pages and (checkpointing is None or checkpointing.done()):
                    checkpointing = asyncio.ensure_future(
                        asyncio.to_thread(store.checkpoint, path))
                if not delta.get("more"):
                    break
        finally:
            fetch.cancel()
            if many_pages:
                self.db.execute("PRAGMA wal_autocheckpoint=1000")
                if checkpointing is not None:
                    await asyncio.gather(checkpointing, return_exceptions=True)
                await asyncio.to_thread(store.checkpoint, path)
        progress["caught_up"] = True
        if initial:
            progress["initial_sync_s"] = round(time.monotonic() - started, 2)
        return count

    async def _fetch_customers(self, cursor: int) -> tuple[dict, float]:
        """A page, and when the central answered it (unix time)."""
        try:
            data, _ = await self.client.request("GET", f"/sync/v1/customers?since={cursor}")
        except CentralError as e:
            self._failed(e)
            raise
        answered_at = time.time()
        self._succeeded()
        # A page of a thousand members decoded in one call would hold the POS API for
        # tens of milliseconds: one member at a time, in a worker thread.
        return await asyncio.to_thread(json_in_steps, data), answered_at

    async def _apply(self, delta: dict) -> None:
        """A page in chunks, yielding to the POS API between them. A chunk's size follows
        what the last one took: a million cached members make each change a few random
        reads, and the POS must not wait for more than a few milliseconds of them."""
        page = delta["customers"]
        start = 0
        while start < len(page):
            size = self._chunk
            began = time.perf_counter()
            customers.apply_chunk(self.db, delta, page[start:start + size])
            took = time.perf_counter() - began
            start += size
            if took > CHUNK_TARGET_S and size > MIN_CHUNK:
                self._chunk = max(MIN_CHUNK, size // 2)
            elif took < CHUNK_TARGET_S / 2 and size < MAX_CHUNK:
                self._chunk = min(MAX_CHUNK, size * 2)
            await asyncio.sleep(0)
        with store.without_fsync(self.db):
            customers.finish_page(self.db, delta)
            if "caps" in delta:
                offline_caps.save(self.db, offline_caps.Caps.from_dict(delta["caps"]))
            if "quarantine" in delta:
                self._quarantine(delta["quarantine"])


def quarantine_of(db: sqlite_utils.Database) -> dict | None:
    """The quarantine the central last reported, kept across restarts."""
    stored = get_meta(db, "quarantine")
    return json.loads(stored) if stored else None


def _bounded(entries: list[JournalEntry]) -> tuple[list[JournalEntry], list[bytes]]:
    """As many entries as fit in one batch: the central refuses a bigger one outright."""
    room = MAX_BATCH_BYTES - ENVELOPE_BYTES
    taken: list[JournalEntry] = []
    encoded: list[bytes] = []
    for e in entries:
        data = e.encoded_body()
        room -= len(data) + 8  # msgpack's bin header
        if room < 0 and taken:
            break
        taken.append(e)
        encoded.append(data)
    return taken, encoded
