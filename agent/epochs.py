"""Epochs: a till whose database was restored from a backup goes on in a new epoch.

A restored database has an older journal than the one the central has seen: the central
holds entries of this epoch beyond our last one, or holds other entries under our numbers.
Writing on would reuse sequence numbers the central already holds, and the central would
refuse it as a rewritten journal (with a security alert). So before sending, the till
compares its journal with the central's position for the epoch; on a mismatch it starts a
new epoch at seq 1, and entries of the old epoch the central does not hold (receipts sold
after the restore) are carried into the new one, keeping their receipt ids and content.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass

import sqlite_utils

from agent import journal
from agent.store import get_meta, set_meta

log = logging.getLogger(__name__)

PROBE = 1000  # hashes compared per request, as many as the central sends at once


@dataclass(frozen=True)
class Position:
    """The central's answer for one epoch of this till."""

    known: bool
    current: bool
    acked_seq: int
    hashes: dict[int, str]

    @classmethod
    def from_json(cls, d: dict) -> Position:
        return cls(bool(d["known"]), bool(d["current"]), int(d["acked_seq"]),
                   {int(k): str(v) for k, v in d["hashes"].items()})


@dataclass(frozen=True)
class Verdict:
    restored: bool
    keep_until: int  # our entries up to here are held by the central as they are
    acked_seq: int


def judge(db: sqlite_utils.Database, pos: Position, probed_from: int) -> Verdict:
    """Compare one probe of the central's hashes with ours (pure but for reading the db)."""
    ep = journal.epoch(db)
    last_seq, _ = journal.last(db)
    if not pos.known:
        return Verdict(False, 0, 0)  # nothing of this epoch at the central yet
    ours = journal.hashes(db, ep, probed_from, last_seq)
    diverged = [s for s in sorted(pos.hashes) if ours.get(s) != pos.hashes[s]]
    if diverged:
        return Verdict(True, diverged[0] - 1, pos.acked_seq)
    if pos.acked_seq > last_seq:
        return Verdict(True, last_seq, pos.acked_seq)
    if not pos.current:
        # A newer database of this till has been at the central since: this epoch is
        # closed there, so what it does not hold of it must go on in a new one.
        return Verdict(True, pos.acked_seq, pos.acked_seq)
    return Verdict(False, pos.acked_seq, pos.acked_seq)


def start_new_epoch(db: sqlite_utils.Database, keep_until: int, reason: str) -> str:
    """Close the current epoch after `keep_until`; carry later entries into a new epoch."""
    old = journal.epoch(db)
    carried = journal.entries_from(db, keep_until + 1, 10**9, of_epoch=old)
    new = uuid.uuid4().hex
    with db.atomic():
        set_meta(db, "epoch", new)
        set_meta(db, "acked_seq", "0")
        set_meta(db, "previous_epoch", old)
        set_meta(db, "epoch_reason", reason)
        db.execute("DELETE FROM outbox WHERE epoch = ?", [old])
        for e in carried:
            moved = journal.append(db, dataclasses.replace(e, seq=0, epoch="", prev_hash="",
                                                           hash=""))
            db.execute("UPDATE receipts SET seq = ? WHERE receipt_id = ?",
                       [moved.seq, moved.receipt_id])
    log.warning("new journal epoch %s after %s (%s); %d entries carried over", new, old,
                reason, len(carried))
    return new


def describe(db: sqlite_utils.Database) -> dict[str, str | None]:
    return {"previous_epoch": get_meta(db, "previous_epoch"),
            "reason": get_meta(db, "epoch_reason")}

