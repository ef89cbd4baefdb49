"""Personal values in journal entries, sealed under a key per customer that erasure destroys.

Tills of earlier versions journalled the customer's full birthday in a sale's detail (today's
entries carry only what pricing used: protocol.rules.birthdays). An entry's hash is that of
the bytes the till signed, and the next entry signed that hash, so the value cannot be cut
out of the bytes without leaving an entry whose content no longer gives its hash. At ingest
such an entry is therefore kept in two parts:

- `journal.body`: the entry with every personal value replaced by nil (`redact`, from
  protocol.personal: the till redacts its own copy by the same rule once acknowledged). It is what
  every reader of the journal reads (re-pricing, returns, campaign budgets, KPIs); none of
  them reads the birthday (re-pricing takes the one the central sent: central.deliveries).
  `journal.hash` and `journal.prev_hash` stay the till's, so the chain checks of ingest (the
  next entry, a resent batch, a till comparing its position) and the hashes head office
  compares with the till's own journal are unchanged.
- `journal_sealed`: the bytes the till signed, AES-256-GCM under the customer's own data key
  (`customer_keys`), bound to the entry's till, epoch, sequence and hash.

Erasure (central.personal_data) first checks every sealed entry of the customer (its bytes
give its hash, and redact to the stored body), records a digest of those bodies and hashes
in the erasure's audit record, then deletes the key: the bytes are unreadable, and nothing
else at the central holds the value. An entry that comes after the erasure keeps nothing.

What an auditor can verify (`verify_till`, GET /api/v1/tills/{id}/journal/verify):
- of every entry: its place (sequence without gaps from 1 in its epoch) and its link (its
  prev_hash is the hash of the entry before, from the epoch's genesis);
- of an entry stored as signed: that its bytes give its hash;
- of a sealed entry while its customer's key lives: the same of the unsealed bytes, and that
  the stored body is exactly those bytes redacted;
- of a sealed entry after erasure: no longer its hash over its content (that covered the
  birthday, which is gone), but that its hash is the one the following entry signed as its
  prev_hash, and that its stored body is the one the central checked against the hash just
  before the key went (the digest in the hash-chained audit log, central.audit, which
  GET /api/v1/audit/verify checks). Anyone who kept a copy of the entry, or the till's own
  journal, can still check its hash in full.

The key table lives in the central's database: a backup taken before an erasure keeps the
customer's key as it keeps the rest of their data, until backups of that age are gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from central.clock import iso
from central.db import Connection
from protocol.hash_chain import genesis_hash
from protocol.journal import JournalEntry
from protocol.personal import PERSONAL, Unredactable, may_carry_personal, redact
from protocol.wire import InvalidMessage, unpack, unpack_map_skipping

_NONCE = 12
PAGE = 1000


def _aad(till_id: str, epoch: str, seq: int, hash_: str) -> bytes:
    return f"{till_id}\n{epoch}\n{seq}\n{hash_}".encode()


def _key(conn: Connection, customer_id: str, now: datetime) -> bytes | None:
    """The customer's data key, made on first use; None once erased (nothing is kept)."""
    row = conn.execute("SELECT erased_at FROM customers WHERE id = ?",
                       (customer_id,)).fetchone()
    if row is not None and row["erased_at"] is not None:
        return None
    conn.execute("INSERT INTO customer_keys (customer_id, key, created_at) VALUES (?, ?, ?)"
                 " ON CONFLICT DO NOTHING", (customer_id, secrets.token_hex(32), iso(now)))
    key = conn.execute("SELECT key FROM customer_keys WHERE customer_id = ?",
                       (customer_id,)).fetchone()["key"]
    return bytes.fromhex(key)


def bodies_to_store(conn: Connection, till_id: str,
                    fresh: Sequence[tuple[JournalEntry, bytes]], now: datetime) -> list[bytes]:
    """The body to store of each new entry: the till's bytes, or, where they hold a personal
    value, those bytes redacted, with the bytes sealed (inside ingest's transaction, which
    has locked the customers)."""
    out = []
    for e, raw in fresh:
        try:
            redacted = (redact(raw) if e.customer_id is not None and may_carry_personal(raw)
                        else None)
        except Unredactable as problem:
            raise Unredactable(f"entry {e.seq}: {problem}") from None
        if redacted is None:
            out.append(raw)
            continue
        assert e.customer_id is not None
        key = _key(conn, e.customer_id, now)
        sealed = None
        if key is not None:
            nonce = os.urandom(_NONCE)
            sealed = nonce + AESGCM(key).encrypt(nonce, raw,
                                                 _aad(till_id, e.epoch, e.seq, e.hash))
        conn.execute("INSERT INTO journal_sealed (till_id, epoch, seq, customer_id, sealed)"
                     " VALUES (?, ?, ?, ?, ?)", (till_id, e.epoch, e.seq, e.customer_id, sealed))
        out.append(redacted)
    return out


def _unseal(key_hex: str | None, r: Any) -> bytes | None:
    """The till's bytes of a sealed entry (row: till_id, epoch, seq, hash, sealed); None if
    they cannot be read (no key, no bytes kept, or not what was sealed)."""
    if key_hex is None or r["sealed"] is None:
        return None
    sealed = bytes(r["sealed"])
    try:
        return AESGCM(bytes.fromhex(key_hex)).decrypt(
            sealed[:_NONCE], sealed[_NONCE:], _aad(r["till_id"], r["epoch"], r["seq"], r["hash"]))
    except InvalidTag:
        return None


def _sealed_rows(conn: Connection, customer_id: str) -> list[Any]:
    return conn.execute(
        "SELECT s.till_id, s.epoch, s.seq, s.sealed, j.hash, j.body, j.receipt_id"
        " FROM journal_sealed s JOIN journal j ON j.till_id = s.till_id"
        " AND j.epoch = s.epoch AND j.seq = s.seq WHERE s.customer_id = ?"
        " ORDER BY s.till_id, s.epoch, s.seq", (customer_id,)).fetchall()


def _customer_key(conn: Connection, customer_id: str) -> str | None:
    row = conn.execute("SELECT key FROM customer_keys WHERE customer_id = ?",
                       (customer_id,)).fetchone()
    return row["key"] if row else None


def personal_values(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The personal values the customer's sealed journal entries hold, for an export."""
    key = _customer_key(conn, customer_id)
    out = []
    for r in _sealed_rows(conn, customer_id):
        raw = _unseal(key, r)
        if raw is None:
            continue
        found: dict[str, Any] = {}
        _collect(unpack(raw), found)
        out.append({"till_id": r["till_id"], "epoch": r["epoch"], "seq": r["seq"],
                    "receipt_id": r["receipt_id"], **found})
    return out


def _collect(value: Any, found: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in PERSONAL and v is not None:
                found[k] = v
            else:
                _collect(v, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, found)


def _entry_line(r: Any) -> str:
    return f"{r['till_id']}/{r['epoch']}/{r['seq']}/{r['hash']}/" \
           f"{hashlib.sha256(bytes(r['body'])).hexdigest()}\n"


def forget(conn: Connection, customer_id: str) -> dict[str, Any]:
    """Erasure's part: check each sealed entry of the customer against its hash, then delete
    the customer's key. Returns what the erasure's audit record keeps: how many entries,
    how many checked out, and a digest of their places, hashes and stored bodies."""
    key = _customer_key(conn, customer_id)
    rows = [r for r in _sealed_rows(conn, customer_id) if r["sealed"] is not None]
    digest = hashlib.sha256()
    checked = 0
    for r in rows:
        raw = _unseal(key, r)
        if raw is not None and hashlib.sha256(raw).hexdigest() == r["hash"] \
                and redact(raw) == bytes(r["body"]):
            checked += 1
        digest.update(_entry_line(r).encode())
    conn.execute("DELETE FROM customer_keys WHERE customer_id = ?", (customer_id,))
    return {"entries": len(rows), "checked": checked,
            "digest": digest.hexdigest() if rows else None}


def _erasure_digests(conn: Connection, customer_id: str) -> set[str]:
    """The digests the erasure records of this customer keep in the audit log."""
    out = set()
    for r in conn.execute("SELECT after FROM audit WHERE action = 'customer.erase'"
                          " AND subject = ?", (f"customer:{customer_id}",)):
        journal = (json.loads(r["after"]) if r["after"] else {}).get("journal") or {}
        if journal.get("digest"):
            out.add(journal["digest"])
    return out


def verify_till(conn: Connection, till_id: str) -> dict[str, Any]:
    """Walk each of the till's epochs from its genesis: places, links, and each entry's
    content as far as it can still be checked (see the module's docstring)."""
    counts = {"as_signed": 0, "sealed": 0, "erased": 0}
    erased: dict[str, list[Any]] = {}  # customer -> rows, checked against the audit log
    entries = 0

    def result(problem: str | None) -> dict[str, Any]:
        return {"till_id": till_id, "entries": entries, **counts, "ok": problem is None,
                "problem": problem}

    epochs = [r[0] for r in conn.execute(
        "SELECT epoch FROM till_epochs WHERE till_id = ? ORDER BY started_at, epoch",
        (till_id,))]
    for epoch in epochs:
        prev, expected = genesis_hash(epoch), 1
        while True:
            rows = conn.execute(
                "SELECT j.till_id, j.epoch, j.seq, j.hash, j.prev_hash, j.body,"
                " s.customer_id AS sealed_for, s.sealed, k.key FROM journal j"
                " LEFT JOIN journal_sealed s ON s.till_id = j.till_id AND s.epoch = j.epoch"
                " AND s.seq = j.seq LEFT JOIN customer_keys k ON k.customer_id = s.customer_id"
                " WHERE j.till_id = ? AND j.epoch = ? AND j.seq >= ? ORDER BY j.seq LIMIT ?",
                (till_id, epoch, expected, PAGE)).fetchall()
            if not rows:
                break
            for r in rows:
                where = f"epoch {epoch} entry {r['seq']}"
                if r["seq"] != expected:
                    return result(f"{where}: expected entry {expected}")
                body = bytes(r["body"])
                # The place and link the body itself names, which its hash (or the erasure's
                # digest) covers, not only the columns beside it.
                try:
                    head = unpack_map_skipping(body, "detail")
                except InvalidMessage:
                    head = {}
                if (head.get("epoch"), head.get("seq")) != (epoch, r["seq"]):
                    return result(f"{where}: its body names another place in the journal")
                if r["prev_hash"] != prev or head.get("prev_hash") != prev:
                    return result(f"{where} does not chain to the entry before it")
                if r["sealed_for"] is None:
                    if hashlib.sha256(body).hexdigest() != r["hash"]:
                        return result(f"{where} has a hash that does not match its content")
                    counts["as_signed"] += 1
                elif (raw := _unseal(r["key"], r)) is not None:
                    if hashlib.sha256(raw).hexdigest() != r["hash"]:
                        return result(f"{where}: its sealed bytes do not give its hash")
                    if redact(raw) != body:
                        return result(f"{where}: its body is not its sealed bytes redacted")
                    counts["sealed"] += 1
                else:
                    if r["sealed"] is not None:
                        erased.setdefault(r["sealed_for"], [])
                    counts["erased"] += 1
                prev, expected, entries = r["hash"], expected + 1, entries + 1
    for customer_id in erased:
        rows = [r for r in _sealed_rows(conn, customer_id) if r["sealed"] is not None]
        digest = hashlib.sha256("".join(_entry_line(r) for r in rows).encode()).hexdigest()
        if digest not in _erasure_digests(conn, customer_id):
            return result(f"the redacted entries of customer {customer_id} are not those"
                          " checked at their erasure")
    return result(None)


__all__ = ["PERSONAL", "Unredactable", "bodies_to_store", "forget", "may_carry_personal",
           "personal_values", "redact", "verify_till"]
