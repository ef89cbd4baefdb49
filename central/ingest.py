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

from central import ledger
from central.alerts import raise_alert
from central.clock import iso, parse_iso
from central.db import transaction
from central.tills import TillRefused, public_key_of
from protocol.batches import Batch, decode_batch
from protocol.journal import JournalEntry, genesis_hash
from protocol.signing import BadSignature
from protocol.wire import InvalidMessage, pack


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
    """Verify, check and apply one batch. Raises BatchRefused with the HTTP status to answer."""
    till_for_alert: str | None = None
    try:

        def key_of(till_id: str):
            nonlocal till_for_alert
            till_for_alert = till_id
            return public_key_of(conn, till_id)

        batch = decode_batch(data, key_of)
    except InvalidMessage as e:
        raise BatchRefused(400, f"malformed batch: {e}") from None
    except TillRefused as e:
        raise BatchRefused(e.status, str(e)) from None
    except BadSignature as e:
        refusal = BatchRefused(401, f"batch refused: {e}", alert="bad batch signature")
        _alert(conn, now, refusal, till_for_alert)
        raise refusal from None
    try:
        with transaction(conn):
            return _apply(conn, batch, now)
    except BatchRefused as refusal:
        _alert(conn, now, refusal, batch.till_id)
        raise


def _alert(
    conn: sqlite3.Connection, now: datetime, refusal: BatchRefused, till_id: str | None
) -> None:
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


def _apply(conn: sqlite3.Connection, batch: Batch, now: datetime) -> Ack:
    acked, last_hash = _epoch_state(conn, batch, now)
    applied = 0
    for entry in batch.entries:
        if entry.seq <= acked:
            held = conn.execute(
                "SELECT hash FROM journal WHERE till_id = ? AND epoch = ? AND seq = ?",
                (batch.till_id, batch.epoch, entry.seq),
            ).fetchone()
            if held is None or held["hash"] != entry.hash:
                raise BatchRefused(
                    409,
                    f"entry {entry.seq} differs from the one already held",
                    alert="journal rewritten",
                )
            continue
        if entry.seq > acked + 1:
            break  # a gap: the answer tells the till where to resend from
        if entry.prev_hash != last_hash or entry.compute_hash() != entry.hash:
            raise BatchRefused(
                422, f"entry {entry.seq} breaks the hash chain", alert="broken hash chain"
            )
        _apply_entry(conn, batch.till_id, entry, now)
        acked, last_hash = entry.seq, entry.hash
        applied += 1
    conn.execute(
        "UPDATE till_epochs SET acked_seq = ?, last_hash = ? WHERE till_id = ? AND epoch = ?",
        (acked, last_hash, batch.till_id, batch.epoch),
    )
    conn.execute(
        "UPDATE tills SET acked_seq = ?, last_hash = ?, last_sync_at = ? WHERE id = ?",
        (acked, last_hash, iso(now), batch.till_id),
    )
    return Ack(batch.epoch, acked, applied)


def _apply_entry(conn: sqlite3.Connection, till_id: str, e: JournalEntry, now: datetime) -> None:
    conn.execute(
        "INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
        " customer_id, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            till_id,
            e.epoch,
            e.seq,
            e.hash,
            e.prev_hash,
            e.kind,
            e.receipt_id,
            e.customer_id,
            pack(e.to_wire()),
            iso(now),
        ),
    )
    conn.execute(
        "INSERT OR IGNORE INTO receipts (till_id, receipt_id, kind, customer_id, store, total,"
        " earned, redeemed, clawback, refund, original_receipt_id, at, ruleset_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            till_id,
            e.receipt_id,
            e.kind,
            e.customer_id,
            e.store,
            e.total,
            e.earned,
            e.redeemed,
            e.clawback,
            e.refund,
            e.original_receipt_id,
            e.at,
            e.ruleset_version,
        ),
    )
    if e.customer_id is None:
        return  # a non-member's receipt: journalled and counted, no points
    if conn.execute("SELECT 1 FROM customers WHERE id = ?", (e.customer_id,)).fetchone() is None:
        raise_alert(
            conn,
            now,
            "unknown-customer",
            f"entry {e.seq} names a customer the central does not know",
            till_id=till_id,
        )
        return
    src = ledger.Source(till_id=till_id, seq=e.seq, receipt_id=e.receipt_id)
    if e.redeemed:
        shortfall = ledger.redeem(conn, e.customer_id, e.redeemed, now, src)
        if shortfall:
            raise_alert(
                conn,
                now,
                "offline-overspend",
                f"receipt spent {shortfall} points more than the balance held; recorded as debt",
                till_id=till_id,
                customer_id=e.customer_id,
            )
    for lot in e.lots:
        ledger.earn(
            conn,
            e.customer_id,
            lot["points"],
            parse_iso(lot["activates"]),
            parse_iso(lot["expires"]),
            now,
            src,
        )
    if e.kind == "return" and e.original_receipt_id:
        if e.refund:
            ledger.refund(conn, e.customer_id, e.refund, e.original_receipt_id, now, src)
        if e.clawback:
            ledger.clawback(conn, e.customer_id, e.clawback, e.original_receipt_id, now, src)
    ledger.touch(conn, e.customer_id)
