"""Batch ingestion: every journal entry of every till applied to the ledger exactly once.

Per till and epoch the central keeps the highest contiguous sequence it holds and that
entry's hash. An entry at or below it must repeat what is held (a replay, answered and
ignored); the next one must chain on from it; anything further is a gap, and the answer
(the acknowledged sequence) makes the till resend from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from central import ingest_log, journal_personal, ledger, presence, returns, settlement
from central.alerts import raise_alert, raise_or_count
from central.channels import is_virtual_till
from central.clock import iso, parse_iso
from central.db import Connection, transaction
from central.tills import TillRefused, public_key_of
from protocol.batches import Batch, InvalidEntry, decode_batch
from protocol.card_keys import CardKeyring
from protocol.journal import JournalEntry, genesis_hash
from protocol.signing import BadSignature
from protocol.wire import InvalidMessage


class BatchRefused(Exception):
    def __init__(self, status: int, message: str, *, alert: str | None = None,
                 failed_auth: bool = False, till_id: str | None = None,
                 bad_entry: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.alert = alert  # a security alert to raise, outside the rolled-back transaction
        # An entry the till signed that does not fit the journal's schema: one alert per
        # till and period (ENTRY_REFUSED), however often the till sends it.
        self.bad_entry = bad_entry
        # Nobody proved who they are (a bad signature, an unknown or revoked till): counted
        # per source by the web layer (central.auth_failures), not one alert each.
        self.failed_auth = failed_auth
        self.till_id = till_id  # the till the batch names, if it got that far


ENTRY_REFUSED = "entry-refused"
ENTRY_REFUSED_PERIOD = timedelta(hours=1)


@dataclass(frozen=True)
class Ack:
    epoch: str
    acked_seq: int
    applied: int

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "acked_seq": self.acked_seq, "applied": self.applied}

    def range(self, till_id: str) -> ingest_log.Range:
        """What this batch applied, for the ingest sequence (central.ingest_log)."""
        return (till_id, self.epoch, self.acked_seq - self.applied + 1, self.acked_seq)


def ingest(conn: Connection, data: bytes, now: datetime,
           keys: CardKeyring | None = None) -> Ack:
    """Verify, check and apply one batch. Raises BatchRefused with the HTTP status to answer.

    One batch, one transaction; the sync API goes through central.ingest_writer instead,
    which applies several tills' batches per transaction with the same two steps.
    """
    try:
        batch = verify(conn, data, now)
    except BatchRefused as refusal:
        refusal_alert(conn, now, refusal, refusal.till_id)
        raise
    try:
        with transaction(conn):
            lock_batches(conn, [batch])
            ack = apply(conn, batch, now, keys)
            ingest_log.record(conn, [ack.range(batch.till_id)] if ack.applied else [])
            return ack
    except BatchRefused as refusal:
        refusal_alert(conn, now, refusal, batch.till_id)
        raise


def verify(conn: Connection, data: bytes, now: datetime) -> Batch:
    """Decode a batch and check its signature and till; raises BatchRefused.

    Writes nothing: the caller reports a refusal (refusal_alert, or per source through
    central.auth_failures), so it runs outside any transaction.
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
    except InvalidEntry as e:
        # Signed by the till, so it is the till's own: refused whole (its chain cannot go
        # on past the entry), with an alert; the till holds the batch and says so.
        raise BatchRefused(422, f"journal entry refused: {e}", alert=ENTRY_REFUSED,
                           till_id=till_for_alert, bad_entry=True) from None
    except InvalidMessage as e:
        raise BatchRefused(400, f"malformed batch: {e}") from None
    except TillRefused as e:
        raise BatchRefused(e.status, str(e), failed_auth=True, till_id=till_for_alert) from None
    except BadSignature as e:
        raise BatchRefused(401, f"batch refused: {e}", alert="bad batch signature",
                           failed_auth=True, till_id=till_for_alert) from None


def lock_batches(conn: Connection, batches: Sequence[Batch]) -> None:
    """First thing in an ingest transaction, for several central processes on one database:
    one till's batches apply one at a time (a batch and its resend, reaching two processes
    through a balancer, do not race), and the customers they name are locked before any is
    changed. Every transaction takes these locks in one order (tills, then customers, each
    sorted) so none waits on another in a circle. On SQLite the write lock covers it."""
    for till_id in sorted({b.till_id for b in batches}):
        conn.dialect.lock(conn, f"till:{till_id}")
    ledger.lock_customers(conn, {e.customer_id for b in batches for e in b.entries
                                 if e.customer_id is not None})


def refusal_alert(
    conn: Connection, now: datetime, refusal: BatchRefused, till_id: str | None
) -> None:
    """Raise the refusal's security alert; call it after rolling back what the batch did."""
    if refusal.bad_entry and till_id is not None:
        raise_or_count(conn, now, ENTRY_REFUSED, str(refusal), till_id=till_id,
                       period=ENTRY_REFUSED_PERIOD)
    elif refusal.alert:
        raise_alert(
            conn,
            now,
            "security",
            f"{refusal.alert}: {refusal}",
            severity="critical",
            till_id=till_id,
        )


def _epoch_state(conn: Connection, batch: Batch, now: datetime) -> tuple[int, str]:
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


def apply(conn: Connection, batch: Batch, now: datetime,
          keys: CardKeyring | None = None) -> Ack:
    """Check sequence and chain, apply the new entries; runs inside the caller's transaction.
    `keys` (the card keys) let the presence proofs of app codes be computed again.

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
                422, f"entry {e.seq} breaks the hash chain: its prev_hash is not the hash of"
                     " the entry before it", alert="broken hash chain"
            )
        last_hash = e.hash
    if fresh:
        sold = _sale_times(conn, batch.till_id, [e for e, _ in fresh], now)
        try:
            _store_entries(conn, batch.till_id, fresh, sold, now)
        except journal_personal.Unredactable as e:
            raise BatchRefused(422, f"journal entry refused: {e}", alert=ENTRY_REFUSED,
                               till_id=batch.till_id, bad_entry=True) from None
        settlement.apply_entries(conn, batch.till_id, [e for e, _ in fresh], now)
        # Spent points need the customer's presence: each proof re-checked, one alert for
        # those that fail (the receipts are printed: journalled all the same). A channel's
        # orders have none: the channel signed its customer in (central.channel_orders).
        if not is_virtual_till(batch.till_id):
            presence.check_entries(conn, batch.till_id, [e for e, _ in fresh], now, keys)
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


def _check_replayed(conn: Connection, batch: Batch, acked: int) -> None:
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


# How far a till's clock may stray before its sale times raise an alert.
SALE_TIME_TOLERANCE = timedelta(minutes=5)


def _sale_times(conn: Connection, till_id: str, entries: list[JournalEntry],
                now: datetime) -> list[str]:
    """The sale time the central accepts for each entry: the till's claim, held between the
    till's previous entry (or its enrolment) and now, with an alert beyond a tolerance.
    Points are dated from it (central.credits), so a till cannot make them active at once
    by dating a sale in the past, or keep them from expiring by dating it in the future."""
    row = conn.execute("SELECT COALESCE(last_sold_at, enrolled_at) FROM tills WHERE id = ?",
                       (till_id,)).fetchone()
    floor = parse_iso(row[0]) if row and row[0] else now
    held: list[str] = []
    strays: list[str] = []
    for e in entries:
        try:
            claimed = parse_iso(e.at)
        except ValueError:
            claimed = floor
        accepted = min(max(claimed, floor), now)
        if abs(claimed - accepted) > SALE_TIME_TOLERANCE:
            strays.append(f"entry {e.seq} at {e.at[:40]}")
        held.append(iso(accepted))
        floor = accepted
    conn.execute("UPDATE tills SET last_sold_at = ? WHERE id = ?", (held[-1], till_id))
    if strays:
        raise_alert(conn, now, "sale-time",
                    f"sale times outside the till's previous entry and the time of ingest,"
                    f" held to them: {', '.join(strays[:5])}"
                    + (f" and {len(strays) - 5} more" if len(strays) > 5 else ""),
                    till_id=till_id)
    return held


def _store_entries(
    conn: Connection, till_id: str, fresh: list[tuple[JournalEntry, bytes]],
    sold: list[str], now: datetime
) -> None:
    received = iso(now)
    # An entry of an earlier till holding a personal value is stored redacted, its bytes
    # sealed under the customer's key (central.journal_personal); hashes stay the till's.
    bodies = journal_personal.bodies_to_store(conn, till_id, fresh, now)
    conn.executemany(
        "INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
        " customer_id, body, received_at, sold_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (till_id, e.epoch, e.seq, e.hash, e.prev_hash, e.kind, e.receipt_id, e.customer_id,
             body, received, at)
            for (e, _), body, at in zip(fresh, bodies, sold, strict=True)
        ],
    )
    conn.executemany(
        "INSERT INTO receipts (till_id, receipt_id, kind, customer_id, store, total,"
        " earned, redeemed, clawback, refund, original_receipt_id, at, ruleset_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (till_id, e.receipt_id, e.kind, e.customer_id, e.store, e.total, e.earned,
             e.redeemed, e.clawback, e.refund, e.original_receipt_id, e.at, e.ruleset_version)
            for e, _ in fresh
        ],
    )


MAX_POSITION_HASHES = 1000


def position(
    conn: Connection, till_id: str, epoch: str, first_seq: int, last_seq: int
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
