"""Idempotency keys of the POS's receipts and returns: a retry learns what became of the first.

A key is stored with the pending receipt, in the same transaction, so it exists exactly when
something may have reached the printer; it follows the receipt to `done` (with the answer the
POS got, fiscal document included) or `cancelled` (with what was done), also across restarts.
The same key with another body is refused: it names another operation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import sqlite_utils

from agent.pos_input import BadRequest

MAX_KEY = 200
Endpoint = Literal["receipts", "returns"]


@dataclass(frozen=True)
class PosRequest:
    """One POS operation as its key names it."""

    key: str
    endpoint: Endpoint
    body_hash: str


@dataclass(frozen=True)
class Known:
    receipt_id: str
    state: Literal["pending", "done", "cancelled"]
    result: dict[str, Any]
    same_body: bool


def body_hash(endpoint: Endpoint, body: dict[str, Any]) -> str:
    """Of the request as the POS meant it: canonical JSON without the key itself."""
    meant = {k: v for k, v in body.items() if k != "idempotency_key"}
    text = json.dumps([endpoint, meant], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def from_request(header: str | None, body: dict[str, Any],
                 endpoint: Endpoint) -> PosRequest | None:
    key = parse_key(header, body)
    return None if key is None else PosRequest(key, endpoint, body_hash(endpoint, body))


def parse_key(header: str | None, body: dict[str, Any]) -> str | None:
    """From the `Idempotency-Key` header or the body's `idempotency_key`; None if neither."""
    field = body.get("idempotency_key")
    if field is not None and not isinstance(field, str):
        raise BadRequest("idempotency_key must be a string")
    if header is not None and field is not None and header != field:
        raise BadRequest("Idempotency-Key header and idempotency_key differ: send one")
    key = header if header is not None else field
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY or not all(" " < ch < "\x7f" for ch in key):
        raise BadRequest(f"idempotency key must be 1 to {MAX_KEY} printable ASCII characters"
                        " without spaces")
    return key


def lookup(db: sqlite_utils.Database, request: PosRequest) -> Known | None:
    row = db.execute(
        "SELECT receipt_id, state, result, endpoint, body_hash FROM pos_requests"
        " WHERE idem_key = ?", [request.key]).fetchone()
    if row is None:
        return None
    receipt_id, state, result, endpoint, digest = row
    return Known(receipt_id, state, json.loads(result),
                 same_body=(endpoint, digest) == (request.endpoint, request.body_hash))


def record_pending(db: sqlite_utils.Database, request: PosRequest, receipt_id: str,
                   at: str) -> None:
    """Inside the transaction that writes the pending row."""
    db.execute(
        "INSERT INTO pos_requests (idem_key, endpoint, body_hash, receipt_id, state, result,"
        " created_at) VALUES (?, ?, ?, ?, 'pending', '{}', ?)",
        [request.key, request.endpoint, request.body_hash, receipt_id, at])


def settle(db: sqlite_utils.Database, receipt_id: str,
           state: Literal["done", "cancelled"], result: dict[str, Any]) -> None:
    """Inside the transaction that journals or drops the pending row."""
    db.execute("UPDATE pos_requests SET state = ?, result = ? WHERE receipt_id = ?",
               [state, json.dumps(result, sort_keys=True), receipt_id])
