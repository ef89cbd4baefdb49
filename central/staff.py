"""Staff accounts of the head-office API: a name, a role, a token, an expiry, a revocation.

A staff token is `<staff id>:<secret>`, the secret 32 random bytes. The account id before
the colon lets the auth throttle count wrong guesses per account (central.auth_failures),
and finds the one row to compare with. The database keeps only HMAC-SHA256(key, token),
the key in the data directory (`staff-token-key`, mode 0600) beside the central's other
secrets. Why keyed and not slow: a slow hash (bcrypt, argon2) protects guessable
passwords; a 256-bit random secret cannot be guessed however fast the hash, so slowness
would only cost CPU on every request. The key adds what a fast hash lacks: a copy of the
database alone (a backup, a replica, someone with SQL read access) cannot confirm a token.

The data directory's `admin-token` (the single token of earlier versions) keeps working as
the account `admin-token`, role admin, made by the migration: existing scripts, the demo
and the README's commands go on working, its actions are audited under that id, and head
office retires it by revoking that account once named admins exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from central.clock import iso, parse_iso
from central.db import Connection, Row, transaction
from central.errors import Refused
from central.roles import Role, parse
from protocol import bounds

LEGACY_ADMIN = "admin-token"  # the account of the data directory's admin-token file
TOKEN_DAYS = bounds.IntRange(1, 366, "days")
DEFAULT_TOKEN_DAYS = 90
NAME_LEN = 100


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    role: Role
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": str(self.role),
                "created_at": self.created_at, "created_by": self.created_by,
                "expires_at": self.expires_at, "revoked_at": self.revoked_at,
                "revoked_by": self.revoked_by}


def _account(r: Row) -> Account:
    return Account(id=r["id"], name=r["name"], role=Role(r["role"]),
                   created_at=r["created_at"], created_by=r["created_by"],
                   expires_at=r["expires_at"], revoked_at=r["revoked_at"],
                   revoked_by=r["revoked_by"])


_COLUMNS = "id, name, role, created_at, created_by, expires_at, revoked_at, revoked_by"


def token_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def _issue(key: bytes, staff_id: str) -> tuple[str, str]:
    token = f"{staff_id}:{secrets.token_urlsafe(32)}"
    return token, token_hash(key, token)


def add(conn: Connection, key: bytes, name: object, role: object, created_by: str,
        now: datetime, days: int = DEFAULT_TOKEN_DAYS) -> tuple[Account, str]:
    """A new account and its token, which is shown this once and kept only as its hash."""
    bounds.text(name, "name", required=True, max_len=NAME_LEN)
    try:
        checked_role = parse(role)
    except ValueError as e:
        raise Refused(400, f"field 'role': {e}") from None
    TOKEN_DAYS.check(days, "days")
    staff_id = "st_" + secrets.token_hex(5)
    token, hashed = _issue(key, staff_id)
    with transaction(conn):
        conn.execute(
            f"INSERT INTO staff ({_COLUMNS}, token_hash) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
            (staff_id, str(name).strip(), str(checked_role), iso(now), created_by,
             iso(now + timedelta(days=days)), hashed))
    return get(conn, staff_id), token


def reissue(conn: Connection, key: bytes, staff_id: str, now: datetime,
            days: int = DEFAULT_TOKEN_DAYS) -> tuple[Account, str]:
    """A new token for an account that is not revoked; the old one stops working."""
    TOKEN_DAYS.check(days, "days")
    found = get(conn, staff_id)
    if found.id == LEGACY_ADMIN:
        raise Refused(409, "the admin-token account has no token of its own to reissue;"
                           " make a named admin instead")
    if found.revoked_at is not None:
        raise Refused(409, f"staff account {staff_id} is revoked")
    token, hashed = _issue(key, staff_id)
    conn.execute("UPDATE staff SET token_hash = ?, expires_at = ? WHERE id = ?",
                  (hashed, iso(now + timedelta(days=days)), staff_id))
    return get(conn, staff_id), token


def revoke(conn: Connection, staff_id: str, by: str, now: datetime) -> Account:
    """Revoke an account at once, in every central process (each reads it per request).
    Revoking twice keeps the first time."""
    get(conn, staff_id)
    if staff_id == by:
        raise Refused(409, "revoke your own account through another admin")
    conn.execute("UPDATE staff SET revoked_at = COALESCE(revoked_at, ?),"
                 " revoked_by = COALESCE(revoked_by, ?) WHERE id = ?",
                 (iso(now), by, staff_id))
    return get(conn, staff_id)


def get(conn: Connection, staff_id: str) -> Account:
    row = conn.execute(f"SELECT {_COLUMNS} FROM staff WHERE id = ?", (staff_id,)).fetchone()
    if row is None:
        raise Refused(404, "no such staff account")
    return _account(row)


def list_accounts(conn: Connection) -> list[Account]:
    return [_account(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM staff ORDER BY id")]


def authenticate(conn: Connection, key: bytes, admin_token: str, credential: str,
                 now: datetime) -> Account | None:
    """The account a bearer credential proves, if it is valid now; None otherwise.

    `<staff id>:<secret>` is a staff token; anything else is compared with the data
    directory's admin token (the `admin-token` account, while it is not revoked)."""
    staff_id, sep, _ = credential.partition(":")
    if sep:
        row = conn.execute(f"SELECT {_COLUMNS}, token_hash FROM staff WHERE id = ?",
                           (staff_id[:64],)).fetchone()
        if row is None or row["token_hash"] is None or not hmac.compare_digest(
                row["token_hash"], token_hash(key, credential)):
            return None
    else:
        if not hmac.compare_digest(credential.encode(), admin_token.encode()):
            return None
        row = conn.execute(f"SELECT {_COLUMNS} FROM staff WHERE id = ?",
                           (LEGACY_ADMIN,)).fetchone()
        if row is None:
            return None
    account = _account(row)
    if account.revoked_at is not None:
        return None
    if account.expires_at is not None and parse_iso(account.expires_at) <= now:
        return None
    return account
