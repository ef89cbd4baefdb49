"""The till's journal: append-only, gapless per epoch, each entry chained to the one before.

`append` must run inside the caller's `db.atomic()` block, together with whatever else the
receipt writes, so that the entry and its outbox row exist exactly when the receipt does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from agent.store import get_meta
from protocol.journal import JournalEntry, genesis_hash
from protocol.wire import pack, unpack


def epoch(db: sqlite_utils.Database) -> str:
    value = get_meta(db, "epoch")
    assert value is not None, "store without an epoch: migrations not applied"
    return value


def last(db: sqlite_utils.Database) -> tuple[int, str]:
    """(seq, hash) of the newest entry, or (0, the epoch's genesis hash)."""
    row = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, genesis_hash(epoch(db)))


def append(db: sqlite_utils.Database, draft: JournalEntry) -> JournalEntry:
    """Give `draft` the next sequence number and its place in the chain, and store it."""
    assert db.conn.in_transaction, "journal.append must run inside db.atomic()"
    seq, prev_hash = last(db)
    entry = dataclasses.replace(draft, seq=seq + 1, epoch=epoch(db), prev_hash=prev_hash,
                                hash="")
    entry = dataclasses.replace(entry, hash=entry.compute_hash())
    db.execute(
        "INSERT INTO journal (seq, epoch, hash, prev_hash, kind, receipt_id, customer_id,"
        " earned, redeemed, clawback, refund, fiscal_doc, at, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [entry.seq, entry.epoch, entry.hash, entry.prev_hash, entry.kind, entry.receipt_id,
         entry.customer_id, entry.earned, entry.redeemed, entry.clawback, entry.refund,
         entry.fiscal_doc, entry.at, pack(entry.to_wire())],
    )
    db.execute("INSERT INTO outbox (seq) VALUES (?)", [entry.seq])
    return entry


def entries_from(db: sqlite_utils.Database, first_seq: int, limit: int) -> list[JournalEntry]:
    rows = db.execute(
        "SELECT body FROM journal WHERE seq >= ? ORDER BY seq LIMIT ?", [first_seq, limit]
    ).fetchall()
    return [JournalEntry.from_wire(unpack(r[0])) for r in rows]


@dataclass
class VerifyReport:
    entries: int
    last_seq: int
    epoch: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def verify(db: sqlite_utils.Database) -> VerifyReport:
    """Walk the whole chain: sequence, links, hashes, and the indexed columns vs the body."""
    problems: list[str] = []
    ep = epoch(db)
    prev_hash, expected_seq, count = genesis_hash(ep), 1, 0
    for seq, hash_, body in db.execute("SELECT seq, hash, body FROM journal ORDER BY seq"):
        count += 1
        try:
            e = JournalEntry.from_wire(unpack(body))
        except ValueError as err:
            problems.append(f"entry {seq}: unreadable body ({err})")
            expected_seq, prev_hash = seq + 1, hash_
            continue
        if seq != expected_seq:
            problems.append(f"gap: expected entry {expected_seq}, found {seq}")
        if e.seq != seq or e.hash != hash_ or e.epoch != ep:
            problems.append(f"entry {seq}: indexed columns differ from its body")
        if e.prev_hash != prev_hash:
            problems.append(f"entry {seq}: does not chain to the entry before it")
        if e.compute_hash() != e.hash:
            problems.append(f"entry {seq}: content does not match its hash")
        expected_seq, prev_hash = seq + 1, hash_
    return VerifyReport(count, expected_seq - 1, ep, problems)
