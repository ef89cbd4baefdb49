"""One writer for every till's batches: group commit, each batch still all or nothing.

A request verifies its batch (signature, till, decoding) and queues it; one task applies
whatever has queued meanwhile in a single transaction, each batch inside a savepoint of
its own, commits, and only then answers every request of the group. Committing once per
group instead of once per batch writes each hot index page (customers' lots and ledger
rows, the customer row) once per group instead of once per batch: with a thousand tills
sending, that page traffic was a third of ingest.

What a till sees does not change: its batch is applied entirely or not at all, a refusal
rolls back that batch only (its savepoint) and raises its alert, and no answer leaves
before the commit that holds what it acknowledges. A batch that fails for any other
reason fails alone; a failed commit, or a database unavailable midway (full, unreachable:
no fault of the batch that met it), fails the whole group, and its tills resend.

Everything runs on the event loop with the app's one connection, between requests, as the
one-batch path did; a group is bounded (MAX_GROUP_ENTRIES) so the loop is never held long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from central import ingest, ingest_log
from central.db import Connection, Unavailable
from protocol.batches import Batch
from protocol.card_keys import CardKeyring

log = logging.getLogger(__name__)

# About 50 ms of work: enough batches per commit to share most index pages, short enough
# that other requests on the loop wait little.
MAX_GROUP_ENTRIES = 2000


@dataclass
class _Queued:
    batch: Batch
    now: datetime
    answer: asyncio.Future[ingest.Ack]


class IngestWriter:
    def __init__(self, conn: Connection, *,
                 max_group_entries: int = MAX_GROUP_ENTRIES,
                 keys: CardKeyring | None = None) -> None:
        self.conn = conn
        self.keys = keys  # the card keys: presence proofs by app code are re-computed
        self.max_group_entries = max_group_entries
        self._queue: deque[_Queued] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Batches queued for the next commit."""
        return len(self._queue)

    async def submit(self, data: bytes, now: datetime) -> ingest.Ack:
        """Verify, queue and wait for the commit; raises BatchRefused like ingest.ingest."""
        try:
            batch = ingest.verify(self.conn, data, now)
        except ingest.BatchRefused as refusal:
            if not refusal.failed_auth:  # failed authentications: the web layer counts them
                ingest.refusal_alert(self.conn, now, refusal, refusal.till_id)
            raise
        answer: asyncio.Future[ingest.Ack] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(batch, now, answer))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await answer

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:  # never applied: the tills resend
            q = self._queue.popleft()
            if not q.answer.done():
                q.answer.set_exception(ConnectionError("the central is shutting down"))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                self._apply_group(self._take_group())
                # Requests that arrived meanwhile verify and queue before the next group.
                await asyncio.sleep(0)

    def _take_group(self) -> list[_Queued]:
        group = [self._queue.popleft()]
        entries = len(group[0].batch.entries)
        while self._queue and entries + len(self._queue[0].batch.entries) <= \
                self.max_group_entries:
            q = self._queue.popleft()
            entries += len(q.batch.entries)
            group.append(q)
        return group

    def _apply_group(self, group: list[_Queued]) -> None:
        conn = self.conn
        outcomes: list[ingest.Ack | Exception] = []
        try:
            with conn.transaction():
                ingest.lock_batches(conn, [q.batch for q in group])
                for q in group:
                    outcome: ingest.Ack | Exception
                    try:
                        with conn.savepoint("batch"):
                            outcome = ingest.apply(conn, q.batch, q.now, self.keys)
                    except Unavailable:
                        raise  # not this batch's fault: the whole group fails, tills resend
                    except Exception as e:
                        if isinstance(e, ingest.BatchRefused):
                            ingest.refusal_alert(conn, q.now, e, q.batch.till_id)
                        else:
                            log.exception("batch of till %s failed", q.batch.till_id)
                        outcome = e
                    outcomes.append(outcome)
                # Numbered last, just before COMMIT, for the followers (central.ingest_log).
                ingest_log.record(conn, [o.range(q.batch.till_id)
                                         for q, o in zip(group, outcomes, strict=True)
                                         if isinstance(o, ingest.Ack) and o.applied])
        except Exception as e:
            # Nothing of the group is held: every till gets the error and resends.
            log.exception("ingest transaction of %d batches failed", len(group))
            for q in group:
                if not q.answer.done():
                    q.answer.set_exception(e)
            return
        for q, outcome in zip(group, outcomes, strict=True):
            if q.answer.done():  # the request went away meanwhile
                continue
            if isinstance(outcome, Exception):
                q.answer.set_exception(outcome)
            else:
                q.answer.set_result(outcome)
