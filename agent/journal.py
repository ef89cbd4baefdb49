"""The till's journal: append-only, gapless per epoch, each entry chained to the one before.

`append` must run inside the caller's `db.atomic()` block, together with whatever else the
receipt writes, so that the entry and its outbox row exist exactly when the receipt does.
Entries are keyed by (epoch, seq): a restored database goes on in a new epoch
(agent.epochs) and keeps the old epoch's entries; appending and sending concern the
current epoch only.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from agent.store import get_meta, set_meta
from protocol.journal import JournalEntry, genesis_hash
from protocol.personal import PERSONAL_KEY, Unredactable, may_carry_personal, redact
from protocol.wire import InvalidMessage, pack, unpack

log = logging.getLogger(__name__)

# Entries looked at per step of redaction: one step is one short transaction on the event
# loop, so a till with a big journal keeps serving the POS between steps.
REDACT_PAGE = 500


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
    rows = db.execute("SELECT seq, body, redacted FROM journal WHERE epoch = ? AND seq >= ?"
                      " ORDER BY seq LIMIT ?", [epoch(db), first_seq, limit]).fetchall()
    out: list[JournalEntry] = []
    for seq, body, redacted in rows:
        if redacted:
            # Never sent: its bytes no longer give its hash. Only a central that lost what it
            # had acknowledged asks for it again; it holds the signed bytes no more either.
            return out, (f"entry {seq}: acknowledged before, and its personal values have"
                         " been cut out since, so its signed bytes are gone")
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


def redact_acknowledged(db: sqlite_utils.Database, acked_seq: int,
                        page: int | None = None) -> tuple[int, bool]:
    """One step of cutting personal values (protocol.personal) out of the current epoch's
    entries the central has acknowledged, at most `page` sequence numbers of them; returns
    (entries redacted, whether more acknowledged entries are left to look at).

    Only at or below `acked_seq`: until acknowledged, the till may have to send an entry
    again, and then only its exact signed bytes will do. The hash and prev_hash columns
    stay; `redacted` = 1 tells verification the body no longer gives the hash. How far it
    has looked is kept in meta, so each entry is looked at once."""
    ep = epoch(db)
    checked_epoch, _, checked = (get_meta(db, "personal_checked") or "").partition(" ")
    done = int(checked) if checked_epoch == ep else 0
    upto = min(acked_seq, done + (page or REDACT_PAGE))
    if upto <= done:
        return 0, False
    count = 0
    # The old bytes do not stay in the file's free space: the store deletes securely
    # (agent.store.open_store).
    with db.atomic():
        rows = db.execute(
            "SELECT seq, body FROM journal WHERE epoch = ? AND seq > ? AND seq <= ?"
            " AND redacted = 0 AND instr(body, ?) > 0", [ep, done, upto, PERSONAL_KEY]
        ).fetchall()
        for seq, body in rows:
            if not may_carry_personal(body):
                continue
            try:
                cut = redact(body)
            except Unredactable as e:  # no till wrote one; the central refused it
                log.error("journal entry %d keeps its body: %s", seq, e)
                continue
            if cut is not None:
                db.execute("UPDATE journal SET body = ?, redacted = 1"
                           " WHERE epoch = ? AND seq = ?", [cut, ep, seq])
                count += 1
        set_meta(db, "personal_checked", f"{ep} {upto}")
    return count, upto < acked_seq


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
    """Walk every epoch's chain: sequence, links, hashes (of bodies not redacted), and the
    indexed columns vs the body."""
    problems: list[str] = []
    ep = epoch(db)
    epochs: list[dict[str, Any]] = []
    chains: dict[str, tuple[int, str]] = {}  # epoch -> (next expected seq, previous hash)
    count = 0
    for row_epoch, seq, hash_, body, redacted in db.execute(
            "SELECT epoch, seq, hash, body, redacted FROM journal ORDER BY epoch = ?, id",
            [ep]):
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
        # A redacted body (redact_acknowledged) no longer gives its hash; its links still
        # verify, and the central holds the signed bytes sealed.
        if not redacted and e.compute_hash() != e.hash:
            problems.append(f"{where}: content does not match its hash")
    last_seq = chains.get(ep, (1, ""))[0] - 1
    return VerifyReport(count, last_seq, ep, problems, epochs)
