"""The audit log: every change made through the head office and every read of a customer's
personal data, with who (the staff account of the token), what, when, before and after.

Append-only and hash-chained like a till's journal (protocol.hash_chain): each record
carries the hash of the one before it, from a genesis hash of its own, so an edited,
reordered or deleted record breaks the chain at that place (`verify`). Records are appended
in the transaction of the change they describe (`recorded`), so neither commits without the
other, under a lock that numbers them one at a time across central processes.

Personal data never enters the log (152-FZ erasure, central.personal_data): the subject is
a customer's id, and values of personal fields in `before`/`after` are replaced by a marker,
with the names of the fields that changed kept. Erasure then has nothing to reach here, and
the chain never needs rewriting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from central.clock import iso
from central.db import Connection, Row, transaction
from protocol.hash_chain import body_hash, chain_ok, genesis_hash

GENESIS = genesis_hash("central", kind="audit")
# Fields whose values identify a person; their values are never logged, only that they were
# there (or changed).
PERSONAL = frozenset({"name", "phone", "birthday", "card_number", "cards", "last4",
                      "segments", "email", "contacts", "cards_to_relink"})
PERSONAL_MARK = "[personal data]"
# Changes to the programme itself (campaigns, rules, thresholds): their names and segment
# conditions are the programme's, not a person's, and are recorded as they are.
PROGRAMME_ACTIONS = ("campaign.", "ruleset.", "fraud-rules.", "offline-caps.",
                     "adjustment-policy.")
MAX_PAGE = 500


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    prev_hash: str
    at: str
    actor: str
    action: str
    subject: str
    before: str | None  # JSON text, as stored and hashed
    after: str | None
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev_hash": self.prev_hash, "at": self.at,
                "actor": self.actor, "action": self.action, "subject": self.subject,
                "before": self.before, "after": self.after}

    def compute_hash(self) -> str:
        return body_hash(self.body())

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "before": _loads(self.before), "after": _loads(self.after),
                "hash": self.hash}


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def without_personal_data(value: Any) -> Any:
    """`value` with the values of personal fields replaced by a marker, at any depth."""
    if isinstance(value, dict):
        return {k: (PERSONAL_MARK if k in PERSONAL and v not in (None, "", [])
                    else without_personal_data(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [without_personal_data(v) for v in value]
    return value


def _dumps(value: Any, mask: bool = True) -> str | None:
    if value is None:
        return None
    return json.dumps(without_personal_data(value) if mask else value, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))


@dataclass
class Change:
    """What a change is about, filled in while it is made: the subject may only be known
    after (a new customer's id), the action may turn out another (an adjustment that waits
    for approval); before and after are JSON-able documents."""

    action: str
    subject: str
    before: Any = None
    after: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def append(conn: Connection, now: datetime, actor: str, action: str, subject: str,
           before: Any = None, after: Any = None) -> AuditRecord:
    """Append one record, inside the caller's transaction."""
    if not conn.in_transaction:
        raise RuntimeError("an audit record is appended inside the change's transaction")
    # One at a time across processes: each record links to the one committed before it.
    conn.dialect.lock(conn, "audit")
    last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last["seq"] + 1, last["hash"]) if last else (1, GENESIS)
    mask = not action.startswith(PROGRAMME_ACTIONS)
    record = AuditRecord(seq=seq, prev_hash=prev, at=iso(now), actor=actor, action=action,
                         subject=subject, before=_dumps(before, mask),
                         after=_dumps(after, mask))
    record = AuditRecord(**{**record.body(), "hash": record.compute_hash()})
    conn.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, before, after, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (record.seq, record.at, record.actor, record.action, record.subject, record.before,
         record.after, record.prev_hash, record.hash))
    return record


@contextmanager
def recorded(conn: Connection, now: datetime, actor: str, action: str,
             subject: str) -> Iterator[Change]:
    """A change and its audit record in one transaction: the record is appended when the
    body of the `with` finishes without an exception; with one, neither is kept."""
    with transaction(conn):
        change = Change(action, subject)
        yield change
        after = change.after
        if change.extra:
            after = {**(after or {}), **change.extra}
        append(conn, now, actor, change.action, change.subject, change.before, after)


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    since: str | None = None  # ISO 8601 UTC, inclusive
    until: str | None = None  # exclusive
    before: int | None = None  # a seq: older records only (paging)
    limit: int = 100


def query(conn: Connection, q: AuditQuery) -> dict[str, Any]:
    """Newest first; `next_before` pages on (None on the last page)."""
    where, params = [], []
    for column in ("actor", "action", "subject"):
        value = getattr(q, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.since is not None:
        where.append("at >= ?")
        params.append(q.since)
    if q.until is not None:
        where.append("at < ?")
        params.append(q.until)
    if q.before is not None:
        where.append("seq < ?")
        params.append(q.before)
    limit = max(1, min(q.limit, MAX_PAGE))
    sql = ("SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY seq DESC LIMIT ?")
    rows = [_record(r) for r in conn.execute(sql, (*params, limit + 1))]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"records": [r.to_dict() for r in rows],
            "next_before": rows[-1].seq if more else None}


def _record(r: Row) -> AuditRecord:
    return AuditRecord(seq=r["seq"], prev_hash=r["prev_hash"], at=r["at"], actor=r["actor"],
                       action=r["action"], subject=r["subject"], before=r["before"],
                       after=r["after"], hash=r["hash"])


def verify(conn: Connection, page: int = 1000) -> dict[str, Any]:
    """Walk the whole chain from its genesis: numbering without gaps, links and hashes."""
    prev, expected, count = GENESIS, 1, 0
    while True:
        records = [_record(r) for r in conn.execute(
            "SELECT * FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?", (expected, page))]
        if not records:
            return {"records": count, "ok": True, "problem": None}
        for r in records:
            if r.seq != expected:
                return {"records": count, "ok": False,
                        "problem": f"gap: expected entry {expected}, found {r.seq}"}
            expected += 1
        if (problem := chain_ok(records, prev)) is not None:
            return {"records": count, "ok": False, "problem": problem}
        count += len(records)
        prev = records[-1].hash
