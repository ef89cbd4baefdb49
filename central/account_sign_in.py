"""How a customer signs in to their own account: a one-time code to their phone or e-mail,
then a short-lived session.

Codes: six random digits with a five-minute lifetime, kept only as a keyed hash; five wrong
tries void one, and a new code voids the ones before it. A contact gets a code at most once a
minute and three in ten minutes (`TooSoon`, answered 429 with Retry-After). A contact that
belongs to nobody gets a challenge like any other (stored, throttled, never matching) and no
message, so the answers do not tell who is a customer. Contacts are stored only as a keyed
hash: the table says nothing about a person once their data is erased.

Sessions: a random token, stored as its hash, good for `SESSION_LIFETIME` from sign-in;
ended by signing out and, all of a customer's at once, by erasure.

Tables owned here: account_codes, account_sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from central.clock import iso, parse_iso
from central.db import Connection, transaction
from central.errors import Refused
from protocol import bounds, phones

CODE_DIGITS = 6
CODE_LIFETIME = timedelta(minutes=5)
CODE_ATTEMPTS = 5  # wrong codes before a challenge is void
RESEND_AFTER = timedelta(minutes=1)  # between two codes to one contact
CODES_PER_PERIOD = 3  # codes to one contact per CODE_PERIOD
CODE_PERIOD = timedelta(minutes=10)
SESSION_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class Contact:
    channel: str  # "sms" or "email" (central.message_channels.Channels)
    address: str  # the phone in E.164, as stored, or the e-mail, lower-cased


class TooSoon(Refused):
    """429: this contact had its codes for now; `retry_after` seconds until the next."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Issued:
    challenge: str
    expires_at: datetime
    customer_id: str | None  # None: the contact is nobody's; nothing is sent
    code: str  # in memory only, to be sent


def contact_of(phone: object, email: object) -> Contact:
    """The contact a sign-in names: exactly one of `phone` and `email`."""
    if (phone is None) == (email is None):
        raise Refused(400, "give exactly one of the fields 'phone' and 'email'")
    if phone is not None:
        # In E.164, as central.customers keeps phones: "8 (900) 111-22-33" is "+79001112233".
        try:
            return Contact("sms", phones.e164(phone))
        except phones.InvalidPhone as e:
            raise Refused(400, str(e)) from None
    text = bounds.text(email, "email", max_len=254, required=True).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or any(ch.isspace() for ch in text):
        raise Refused(400, "field 'email' must be an e-mail address")
    return Contact("email", text.lower())


def _keyed(key: bytes, *parts: str) -> str:
    # Domain-separated from every other use of the key by the first part.
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def owner(conn: Connection, contact: Contact) -> str | None:
    """The one customer this contact is, or None (nobody's, erased, or several people's)."""
    if contact.channel == "sms":
        rows = conn.execute("SELECT id FROM customers WHERE phone = ? AND erased_at IS NULL",
                            (contact.address,)).fetchall()
    else:
        rows = conn.execute(
            "SELECT c.id FROM message_contacts m JOIN customers c ON c.id = m.customer_id"
            " WHERE LOWER(m.email) = ? AND c.erased_at IS NULL", (contact.address,)).fetchall()
    return str(rows[0]["id"]) if len(rows) == 1 else None


PURPOSES = ("sign-in", "email")


def issue(conn: Connection, key: bytes, contact: Contact, now: datetime, *,
          purpose: str = "sign-in", customer_id: str | None = None) -> Issued:
    """A new code for the contact; TooSoon if it had its codes for now. For signing in the
    code is the contact's owner's; to prove a new e-mail address (`purpose` "email") it is
    the `customer_id` who wants it as theirs, and it signs nobody in."""
    assert purpose in PURPOSES
    contact_hash = _keyed(key, "account-contact", contact.channel, contact.address)
    with transaction(conn):
        # One issuer per contact at a time, across central processes: the count holds.
        conn.dialect.lock(conn, f"account-code:{contact_hash[:32]}")
        recent = [parse_iso(r["created_at"]) for r in conn.execute(
            "SELECT created_at FROM account_codes WHERE contact_hash = ? AND created_at > ?"
            " ORDER BY created_at", (contact_hash, iso(now - CODE_PERIOD)))]
        # Both rules may hold a contact back: the wait is until neither does.
        waits = []
        if recent and now < recent[-1] + RESEND_AFTER:
            waits.append((recent[-1] + RESEND_AFTER - now,
                          "a code was sent to this contact less than a minute ago: use it,"
                          " or ask again later"))
        if len(recent) >= CODES_PER_PERIOD:
            waits.append((recent[-CODES_PER_PERIOD] + CODE_PERIOD - now,
                          f"{CODES_PER_PERIOD} codes were sent to this contact in the last"
                          " ten minutes: use one of them, or ask again later"))
        if waits:
            wait, why = max(waits)
            raise TooSoon(why, _seconds(wait))
        if purpose == "sign-in":
            customer_id = owner(conn, contact)
        conn.execute("UPDATE account_codes SET status = 'void'"
                     " WHERE contact_hash = ? AND status = 'open'", (contact_hash,))
        challenge = "ach_" + secrets.token_urlsafe(18)
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        expires = now + CODE_LIFETIME
        conn.execute(
            "INSERT INTO account_codes (id, contact_hash, customer_id, code_hash, created_at,"
            " expires_at, attempts, status, purpose) VALUES (?, ?, ?, ?, ?, ?, 0, 'open', ?)",
            (challenge, contact_hash, customer_id, _keyed(key, "account-code", challenge, code),
             iso(now), iso(expires), purpose))
    return Issued(challenge, expires, customer_id, code)


def sent_to(conn: Connection, key: bytes, challenge: str, contact: Contact) -> bool | None:
    """Whether the code of `challenge` went to `contact` (only its hash is kept); None: no
    such challenge."""
    row = conn.execute("SELECT contact_hash FROM account_codes WHERE id = ?",
                       (challenge,)).fetchone()
    if row is None:
        return None
    return hmac.compare_digest(
        row["contact_hash"], _keyed(key, "account-contact", contact.channel, contact.address))


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def void(conn: Connection, challenge: str) -> None:
    """The code could not be sent: it can never be used."""
    conn.execute("UPDATE account_codes SET status = 'void' WHERE id = ?", (challenge,))


def check(conn: Connection, key: bytes, challenge: str, code: str, now: datetime,
          purpose: str = "sign-in") -> str:
    """The customer of a right code for `purpose` (used up); else Refused: 422 for a wrong
    code while tries are left, 410 once void, used or expired, 404 for no such challenge.
    A wrong try is committed even though the refusal is raised."""
    if not bounds.ascii_digits(code) or len(code) != CODE_DIGITS:
        raise Refused(400, f"field 'code' must be the {CODE_DIGITS} digits that were sent")
    refusal: Refused | None = None
    with transaction(conn):
        row = conn.execute(
            "SELECT customer_id, code_hash, expires_at, attempts, status FROM account_codes"
            " WHERE id = ? AND purpose = ?" + conn.dialect.for_update,
            (challenge, purpose)).fetchone()
        if row is None:
            raise Refused(404, "field 'challenge': no such code was sent for this")
        if row["status"] != "open":
            raise Refused(410, f"this code is {row['status']}: ask for a new one")
        if now >= parse_iso(row["expires_at"]):
            void(conn, challenge)
            refusal = Refused(410, "this code has expired: ask for a new one")
        elif row["customer_id"] is None or not hmac.compare_digest(
                row["code_hash"], _keyed(key, "account-code", challenge, code)):
            attempts = row["attempts"] + 1
            conn.execute("UPDATE account_codes SET attempts = ?, status = ? WHERE id = ?",
                         (attempts, "void" if attempts >= CODE_ATTEMPTS else "open", challenge))
            refusal = (Refused(410, f"{CODE_ATTEMPTS} wrong codes: this code is void,"
                                    " ask for a new one") if attempts >= CODE_ATTEMPTS
                       else Refused(422, f"field 'code' is wrong: {CODE_ATTEMPTS - attempts}"
                                         " tries left"))
        else:
            conn.execute("UPDATE account_codes SET status = 'used' WHERE id = ?", (challenge,))
    if refusal is not None:
        raise refusal
    return str(row["customer_id"])


def _token_hash(token: str) -> str:
    # The token is 256 random bits: a plain hash is enough to make the stored form useless.
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(conn: Connection, customer_id: str, now: datetime) -> tuple[str, datetime]:
    token = "acs_" + secrets.token_urlsafe(32)
    expires = now + SESSION_LIFETIME
    with transaction(conn):
        conn.execute("INSERT INTO account_sessions (token_hash, customer_id, created_at,"
                     " expires_at) VALUES (?, ?, ?, ?)",
                     (_token_hash(token), customer_id, iso(now), iso(expires)))
    return token, expires


def session_customer(conn: Connection, token: str, now: datetime) -> str | None:
    """The customer of a live session, or None."""
    if not token.startswith("acs_") or len(token) > 100:
        return None
    row = conn.execute(
        "SELECT customer_id FROM account_sessions WHERE token_hash = ? AND ended_at IS NULL"
        " AND expires_at > ?", (_token_hash(token), iso(now))).fetchone()
    return None if row is None else str(row["customer_id"])


def end_session(conn: Connection, token: str, now: datetime) -> None:
    with transaction(conn):
        conn.execute("UPDATE account_sessions SET ended_at = ? WHERE token_hash = ?"
                     " AND ended_at IS NULL", (iso(now), _token_hash(token)))


def end_all(conn: Connection, customer_id: str, now: datetime) -> int:
    """End every session of the customer (erasure); inside the caller's transaction."""
    return conn.execute("UPDATE account_sessions SET ended_at = ? WHERE customer_id = ?"
                        " AND ended_at IS NULL", (iso(now), customer_id)).rowcount
