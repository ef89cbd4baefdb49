"""Batch ingestion: every journal entry of every till applied to the ledger exactly once.

Per till and epoch the central keeps the highest contiguous sequence it holds and that
entry's hash. An entry at or below it must repeat what is held (a replay, answered and
ignored); the next one must chain on from it; anything further is a gap, and the answer
(the acknowledged sequence) makes the till resend from there.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from central import returns, settlement
from central.alerts import raise_alert
from central.clock import iso
from central.db import transaction
from central.tills import TillRefused, public_key_of
from protocol.batches import Batch, decode_batch
from protocol.journal import JournalEntry, genesis_hash
from protocol.signing import BadSignature
from protocol.wire import InvalidMessage


class BatchRefused(Exception):
    def __init__(self, status: int, message: str, *, alert: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.alert = alert  # a security alert to raise, outside the rolled-back transaction


@dataclass(frozen=True)
class Ack:
    epoch: str
    acked_seq: int
    applied: int

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "acked_seq": self.acked_seq, "applied": self.applied}


def ingest(conn: sqlite3.Connection, data: bytes, now: datetime) -> Ack:
    """Verify, check and apply one batch. Raises BatchRefused with the HTTP status to answer.

    One batch, one transaction; the sync API goes through central.ingest_writer instead,
    which applies several tills' batches per transaction with the same two steps.
    """
    batch = verify(conn, data, now)
    try:
        with transaction(conn):
            return apply(conn, batch, now)
    except BatchRefused as refusal:
        refusal_alert(conn, now, refusal, batch.till_id)
        raise


def verify(conn: sqlite3.Connection, data: bytes, now: datetime) -> Batch:
    """Decode a batch and check its signature and till; raises BatchRefused.

    Writes nothing but the alert for a bad signature, so it runs outside any transaction.
    """
    till_for_alert: str | None = None
    try:

        def key_of(till_id: str):
            nonlocal till_for_alert
            till_for_alert = till_id
            return public_key_of(conn, till_id)

        # The detail (the rules engine's account of the receipt) is for re-pricing, which
        # reads it from the stored bytes; ingest only needs the entry's own fields.
        return decode_batch(data, key_of, detail=False)
    except InvalidMessage as e:
        raise BatchRefused(400, f"malformed batch: {e}") from None
    except TillRefused as e:
        raise BatchRefused(e.status, str(e)) from None
    except BadSignature as e:
        refusal = BatchRefused(401, f"batch refused: {e}", alert="bad batch signature")
        refusal_alert(conn, now, refusal, till_for_alert)
        raise refusal from None


def refusal_alert(
    conn: sqlite3.Connection, now: datetime, refusal: BatchRefused, till_id: str | None
) -> None:
    """Raise the refusal's security alert; call it after rolling back what the batch did."""
    if refusal.alert:
        raise_alert(
            conn,
            now,
            "security",
            f"{refusal.alert}: {refusal}",
            severity="critical",
            till_id=till_id,
        )


def _epoch_state(conn: sqlite3.Connection, batch: Batch, now: datetime) -> tuple[int, str]:
    row = conn.execute(
        "SELECT acked_seq, last_hash FROM till_epochs WHERE till_id = ? AND epoch = ?",
        (batch.till_id, batch.epoch),
    ).fetchone()
    if row is not None:
        current = conn.execute(
            "SELECT current_epoch FROM tills WHERE id = ?", (batch.till_id,)
        ).fetchone()["current_epoch"]
        if current != batch.epoch:
            raise BatchRefused(409, "this epoch was superseded by a newer database on the till")
        return row["acked_seq"], row["last_hash"]
    # A new epoch: a till whose database was re-created or restored starts one, at seq 1,
    # so old sequence numbers are never reused.
    conn.execute(
        "INSERT INTO till_epochs (till_id, epoch, acked_seq, last_hash, started_at)"
        " VALUES (?, ?, 0, ?, ?)",
        (batch.till_id, batch.epoch, genesis_hash(batch.epoch), iso(now)),
    )
    conn.execute(
        "UPDATE tills SET current_epoch = ?, acked_seq = 0 WHERE id = ?",
        (batch.epoch, batch.till_id),
    )
    return 0, genesis_hash(batch.epoch)


def apply(conn: sqlite3.Connection, batch: Batch, now: datetime) -> Ack:
    """Check sequence and chain, apply the new entries; runs inside the caller's transaction.

    Raises BatchRefused; the caller rolls back what this batch wrote, then raises the alert.
    """
    acked, last_hash = _epoch_state(conn, batch, now)
    _check_replayed(conn, batch, acked)
    fresh = [(e, raw) for e, raw in zip(batch.entries, batch.encoded, strict=True)
             if e.seq > acked]
    if fresh and fresh[0][0].seq != acked + 1:
        fresh = []  # a gap: the answer tells the till where to resend from
    for e, _ in fresh:
        # The hash is that of the bytes received (decode_batch), so content and hash agree
        # by construction; what is left to check is the link to the entry before.
        if e.prev_hash != last_hash:
            raise BatchRefused(
                422, f"entry {e.seq} breaks the hash chain", alert="broken hash chain"
            )
        last_hash = e.hash
    if fresh:
        _store_entries(conn, batch.till_id, fresh, now)
        settlement.apply_entries(conn, batch.till_id, [e for e, _ in fresh], now)
        # Returns are few: their detail (lines returned, the lease) is decoded here, so the
        # central knows what of each sale is back, whichever till took it.
        returned = [JournalEntry.from_encoded_body(raw) for e, raw in fresh
                    if e.kind == "return"]
        if returned:
            returns.record(conn, batch.till_id, returned, now)
        acked = fresh[-1][0].seq
    conn.execute(
        "UPDATE till_epochs SET acked_seq = ?, last_hash = ? WHERE till_id = ? AND epoch = ?",
        (acked, last_hash, batch.till_id, batch.epoch),
    )
    conn.execute(
        "UPDATE tills SET acked_seq = ?, last_hash = ?, last_sync_at = ? WHERE id = ?",
        (acked, last_hash, iso(now), batch.till_id),
    )
    return Ack(batch.epoch, acked, len(fresh))


def _check_replayed(conn: sqlite3.Connection, batch: Batch, acked: int) -> None:
    """Entries the central holds already must be exactly what it holds."""
    if batch.first_seq > acked:
        return
    held = dict(
        conn.execute(
            "SELECT seq, hash FROM journal WHERE till_id = ? AND epoch = ? AND seq BETWEEN ? AND ?",
            (batch.till_id, batch.epoch, batch.first_seq, min(acked, batch.last_seq)),
        ).fetchall()
    )
    for e in batch.entries:
        if e.seq <= acked and held.get(e.seq) != e.hash:
            raise BatchRefused(
                409, f"entry {e.seq} differs from the one already held", alert="journal rewritten"
            )


def _store_entries(
    conn: sqlite3.Connection, till_id: str, fresh: list[tuple[JournalEntry, bytes]], now: datetime
) -> None:
    received = iso(now)
    conn.executemany(
        "INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
        " customer_id, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (till_id, e.epoch, e.seq, e.hash, e.prev_hash, e.kind, e.receipt_id, e.customer_id,
             raw, received)
            for e, raw in fresh
        ],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO receipts (till_id, receipt_id, kind, customer_id, store, total,"
        " earned, redeemed, clawback, refund, original_receipt_id, at, ruleset_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (till_id, e.receipt_id, e.kind, e.customer_id, e.store, e.total, e.earned,
             e.redeemed, e.clawback, e.refund, e.original_receipt_id, e.at, e.ruleset_version)
            for e, _ in fresh
        ],
    )


MAX_POSITION_HASHES = 1000


def position(
    conn: sqlite3.Connection, till_id: str, epoch: str, first_seq: int, last_seq: int
) -> dict:
    """What the central holds of a till's epoch: how far, and the hashes in a range.

    A till compares them with its own journal to find out whether its database was restored
    from a backup (agent.epochs), before it sends anything that would look like rewriting.
    """
    row = conn.execute(
        "SELECT e.acked_seq, t.current_epoch FROM till_epochs e JOIN tills t ON t.id = e.till_id"
        " WHERE e.till_id = ? AND e.epoch = ?",
        (till_id, epoch),
    ).fetchone()
    if row is None:
        return {"epoch": epoch, "known": False, "current": False, "acked_seq": 0, "hashes": {}}
    first = max(1, first_seq)
    last = min(last_seq, row["acked_seq"], first + MAX_POSITION_HASHES - 1)
    hashes = conn.execute(
        "SELECT seq, hash FROM journal WHERE till_id = ? AND epoch = ? AND seq BETWEEN ? AND ?",
        (till_id, epoch, first, last),
    ).fetchall()
    return {
        "epoch": epoch,
        "known": True,
        "current": row["current_epoch"] == epoch,
        "acked_seq": row["acked_seq"],
        "hashes": {str(r["seq"]): r["hash"] for r in hashes},
    }
