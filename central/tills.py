"""Tills: one-time enrolment tokens, enrolment of a till's key, status, revocation."""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central.clock import iso, parse_iso
from central.db import Connection, transaction
from central.errors import Refused
from protocol import enrolment
from protocol.signing import parse_public_key
from protocol.weak_keys import weakness


class EnrolmentError(Refused):
    """A bad, used or expired enrolment token, or a key enrolled already."""


class TillRefused(Refused):
    """A till that is unknown or not allowed to talk to the central."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_enrolment_token(
    conn: Connection, store: str, now: datetime, ttl: timedelta = timedelta(days=1)
) -> str:
    token = "et_" + secrets.token_urlsafe(24)  # the prefix keeps it from looking like a flag
    conn.execute(
        "INSERT INTO enrolment_tokens (token_hash, store, created_at, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (_hash(token), store, iso(now), iso(now + ttl)),
    )
    return token


def enrol(
    conn: Connection, token: str, public_key_hex: str, proof: str, name: str,
    now: datetime
) -> tuple[str, str]:
    """Use a token once to enrol a till's key; returns (till_id, store).

    The key must be sound and `proof` its signature of the token (protocol.enrolment),
    checked before the token is touched: raises BadSignature otherwise.
    """
    enrolment.check(public_key_hex, token, proof)
    with transaction(conn):
        row = conn.execute(
            # Locked: two processes given the same token at once enrol one till.
            "SELECT * FROM enrolment_tokens WHERE token_hash = ?" + conn.dialect.for_update,
            (_hash(token),)
        ).fetchone()
        if row is None:
            raise EnrolmentError(403, "enrolment token is not known")
        if row["used_at"] is not None:
            raise EnrolmentError(409, "enrolment token has already been used")
        if parse_iso(row["expires_at"]) <= now:
            raise EnrolmentError(403, "enrolment token has expired")
        if conn.execute("SELECT 1 FROM tills WHERE public_key = ?", (public_key_hex,)).fetchone():
            raise EnrolmentError(409, "this key is already enrolled")
        till_id = "till_" + uuid.uuid4().hex[:16]
        conn.execute(
            "INSERT INTO tills (id, name, store, public_key, enrolled_at, sound_key)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            # enrolment.check found the key sound
            (till_id, name, row["store"], public_key_hex, iso(now), public_key_hex),
        )
        conn.execute(
            "UPDATE enrolment_tokens SET used_at = ?, till_id = ? WHERE token_hash = ?",
            (iso(now), till_id, _hash(token)),
        )
    return till_id, row["store"]


def public_key_of(conn: Connection, till_id: str) -> Ed25519PublicKey:
    """The key of an active till; raises TillRefused for an unknown or revoked one."""
    row = conn.execute("SELECT public_key, sound_key, status FROM tills WHERE id = ?",
                       (till_id,)).fetchone()
    if row is None:
        raise TillRefused(403, "till is not enrolled")
    if row["status"] != "active":
        raise TillRefused(403, f"till is {row['status']}: its enrolment was revoked")
    # The check costs milliseconds: a key enrolment checked is not checked again (it was
    # 40 % of ingest's CPU for each till's first batch after a process started).
    if row["sound_key"] != row["public_key"] and (why := _weakness(row["public_key"])):
        # Enrolment refuses such keys; one enrolled before it did proves nothing either.
        raise TillRefused(403, f"till's key is weak ({why}): enrol it again")
    return parse_public_key(row["public_key"])


@functools.lru_cache(maxsize=4096)
def _weakness(public_key_hex: str) -> str | None:
    # A few milliseconds each: once per key, not once per request.
    try:
        return weakness(bytes.fromhex(public_key_hex))
    except ValueError:
        return "not hex"


def revoke(conn: Connection, till_id: str) -> bool:
    cur = conn.execute("UPDATE tills SET status = 'revoked' WHERE id = ?", (till_id,))
    return cur.rowcount == 1


def list_tills(conn: Connection) -> list[dict]:
    rows = conn.execute(
        "SELECT id, name, store, status, enrolled_at, last_sync_at, current_epoch, acked_seq,"
        " quarantined_at, quarantine_reason FROM tills ORDER BY enrolled_at, id"
    ).fetchall()
    listed = []
    for r in rows:
        till = dict(r)
        since, reason = till.pop("quarantined_at"), till.pop("quarantine_reason")
        till["quarantine"] = {"since": since, "reason": reason} if since else None
        listed.append(till)
    return listed
