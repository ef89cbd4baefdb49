"""The till's journal: append-only, gapless per epoch, each entry chained to the one before.

`append` must run inside the caller's `db.atomic()` block, together with whatever else the
receipt writes, so that the entry and its outbox row exist exactly when the receipt does.
Entries are keyed by (epoch, seq): a restored database goes on in a new epoch
(agent.epochs) and keeps the old epoch's entries; appending and sending concern the
current epoch only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from agent.store import get_meta
from protocol.journal import JournalEntry, genesis_hash
from protocol.wire import InvalidMessage, pack, unpack


def epoch(db: sqlite_utils.Database) -> str:
    value = get_meta(db, "epoch")
    assert value is not None, "store without an epoch: migrations not applied"
    return value


def last(db: sqlite_utils.Database) -> tuple[int, str]:
    """(seq, hash) of the current epoch's newest entry, or (0, the epoch's genesis hash)."""
    ep = epoch(db)
    row = db.execute("SELECT seq, hash FROM journal WHERE epoch = ? ORDER BY seq DESC LIMIT 1",
                     [ep]).fetchone()
    return (row[0], row[1]) if row else (0, genesis_hash(ep))


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
    db.execute("INSERT INTO outbox (epoch, seq) VALUES (?, ?)", [entry.epoch, entry.seq])
    return entry


def sendable_from(db: sqlite_utils.Database, first_seq: int, limit: int,
                  ) -> tuple[list[JournalEntry], str | None]:
    """The entries from `first_seq` up to the first that does not fit the journal's schema
    (protocol.journal), and what is wrong with that one (None if all fit)."""
    rows = db.execute("SELECT seq, body FROM journal WHERE epoch = ? AND seq >= ?"
                      " ORDER BY seq LIMIT ?", [epoch(db), first_seq, limit]).fetchall()
    out: list[JournalEntry] = []
    for seq, body in rows:
        try:
            out.append(JournalEntry.from_wire(unpack(body)))
        except InvalidMessage as e:
            return out, f"entry {seq}: {e}"
    return out, None


def entries_from(db: sqlite_utils.Database, first_seq: int, limit: int,
                 of_epoch: str | None = None) -> list[JournalEntry]:
    rows = db.execute(
        "SELECT body FROM journal WHERE epoch = ? AND seq >= ? ORDER BY seq LIMIT ?",
        [of_epoch or epoch(db), first_seq, limit]).fetchall()
    return [JournalEntry.from_wire(unpack(r[0])) for r in rows]


def hashes(db: sqlite_utils.Database, of_epoch: str, first_seq: int,
           last_seq: int) -> dict[int, str]:
    return dict(db.execute(
        "SELECT seq, hash FROM journal WHERE epoch = ? AND seq BETWEEN ? AND ?",
        [of_epoch, first_seq, last_seq]).fetchall())


@dataclass
class VerifyReport:
    entries: int
    last_seq: int  # of the current epoch
    epoch: str
    problems: list[str]
    epochs: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def verify(db: sqlite_utils.Database) -> VerifyReport:
    """Walk every epoch's chain: sequence, links, hashes, and the indexed columns vs the body."""
    problems: list[str] = []
    ep = epoch(db)
    epochs: list[dict[str, Any]] = []
    chains: dict[str, tuple[int, str]] = {}  # epoch -> (next expected seq, previous hash)
    count = 0
    for row_epoch, seq, hash_, body in db.execute(
            "SELECT epoch, seq, hash, body FROM journal ORDER BY epoch = ?, id", [ep]):
        # Older epochs first, the current one last; each chains from its own genesis.
        if row_epoch not in chains:
            chains[row_epoch] = (1, genesis_hash(row_epoch))
            epochs.append({"epoch": row_epoch, "entries": 0, "last_seq": 0})
        expected_seq, prev_hash = chains[row_epoch]
        where = f"entry {seq}" if row_epoch == ep else f"epoch {row_epoch[:8]} entry {seq}"
        count += 1
        epochs[-1]["entries"] += 1
        epochs[-1]["last_seq"] = seq
        chains[row_epoch] = (seq + 1, hash_)
        try:
            e = JournalEntry.from_wire(unpack(body))
        except ValueError as err:
            problems.append(f"{where}: unreadable body ({err})")
            continue
        if seq != expected_seq:
            problems.append(f"gap: expected entry {expected_seq}, found {seq}"
                            + ("" if row_epoch == ep else f" in epoch {row_epoch[:8]}"))
        if e.seq != seq or e.hash != hash_ or e.epoch != row_epoch:
            problems.append(f"{where}: indexed columns differ from its body")
        if e.prev_hash != prev_hash:
            problems.append(f"{where}: does not chain to the entry before it")
        if e.compute_hash() != e.hash:
            problems.append(f"{where}: content does not match its hash")
    last_seq = chains.get(ep, (1, ""))[0] - 1
    return VerifyReport(count, last_seq, ep, problems, epochs)
