"""The customer's presence at a till, as the central sees it: SMS codes it sends and
checks, the seed of the customer's app, and the re-check of every journalled proof.

SMS codes (online only): a till asks for one for a customer (`issue`); the central makes
six random digits, keeps only their hash with a five-minute lifetime, and sends them to the
customer's phone through an `SmsGateway`; the till passes on the code the customer reads
out (`check`): five wrong tries void it. The journal entry of the receipt names the
challenge, which the central then marks used, once.

At ingest every sale that spends points has its proof re-checked (`check_entries`): a card
the customer holds, an app code that the central computes again for a step near the sale
time and that no other entry used, an SMS challenge this till had verified. A proof that
does not hold is journalled all the same (the receipt is printed) and raises one critical
`presence` alert per batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import aiohttp

from central.alerts import raise_alert
from central.clock import iso, parse_iso
from central.db import Connection
from central.errors import Refused
from protocol import app_codes
from protocol.card_keys import CardKeyring
from protocol.journal import JournalEntry

log = logging.getLogger(__name__)

SMS_LIFETIME = timedelta(minutes=5)
SMS_ATTEMPTS = 5  # wrong codes before a challenge is void
SMS_PER_CUSTOMER = 3  # messages to one phone per SMS_PERIOD: a till cannot flood it
SMS_PERIOD = timedelta(minutes=10)
# An app code is taken at most PRESENCE_TTL before the receipt (agent.presence) and one
# step either side of the till's clock: steps beyond these around the sale time are stale.
STEPS_BEFORE_SALE = 5 * 60 // app_codes.STEP_S + 2 * app_codes.WINDOW
STEPS_AFTER_SALE = app_codes.WINDOW + 1


class SmsGateway(Protocol):
    async def send(self, phone: str, text: str) -> None:
        """Hand one message to the gateway; raises SmsFailed if it was not taken."""
        ...


class SmsFailed(Exception):
    pass


class HttpSmsGateway:
    """An SMS provider's HTTP API: POST {"to", "text"} as JSON with a bearer token."""

    def __init__(self, url: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, phone: str, text: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session, \
                    session.post(self.url, json={"to": phone, "text": text},
                                 headers=headers) as resp:
                if resp.status >= 300:
                    raise SmsFailed(f"the SMS gateway answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as e:
            raise SmsFailed(f"the SMS gateway cannot be reached: {type(e).__name__}") from None


class OutboxSmsGateway:
    """For demos and tests, where no gateway runs: each message is a JSON line in a file
    (mode 0600), as the gateway would have been given it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def send(self, phone: str, text: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(mode=0o600, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps({"to": phone, "text": text}) + "\n")
        except OSError as e:
            raise SmsFailed(f"the SMS outbox cannot be written: {e.strerror}") from None


def _code_hash(challenge: str, code: str) -> str:
    return hashlib.sha256(f"{challenge}:{code}".encode()).hexdigest()


@dataclass(frozen=True)
class Challenge:
    id: str
    phone: str
    code: str  # only in memory, to be sent
    expires_at: datetime


def issue(conn: Connection, till_id: str, customer_id: str,
          now: datetime) -> Challenge:
    """A new SMS challenge for the customer; Refused if it cannot be sent to them."""
    row = conn.execute("SELECT phone FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        raise Refused(404, "no such customer")
    if not row["phone"]:
        raise Refused(409, "the customer has no phone number on file: use the app's code or"
                           " the card")
    sent = conn.execute(
        "SELECT COUNT(*) FROM presence_challenges WHERE customer_id = ? AND created_at > ?",
        (customer_id, iso(now - SMS_PERIOD))).fetchone()[0]
    if sent >= SMS_PER_CUSTOMER:
        raise Refused(429, f"{SMS_PER_CUSTOMER} codes were sent to this customer in the last"
                           " ten minutes: use one of them, the app's code or the card")
    # One open challenge per customer: a new one voids the ones before.
    conn.execute("UPDATE presence_challenges SET status = 'void'"
                 " WHERE customer_id = ? AND status = 'open'", (customer_id,))
    challenge = secrets.token_hex(16)
    code = f"{secrets.randbelow(10**app_codes.DIGITS):0{app_codes.DIGITS}d}"
    expires = now + SMS_LIFETIME
    conn.execute(
        "INSERT INTO presence_challenges (id, customer_id, till_id, code_hash, created_at,"
        " expires_at, attempts, status) VALUES (?, ?, ?, ?, ?, ?, 0, 'open')",
        (challenge, customer_id, till_id, _code_hash(challenge, code), iso(now), iso(expires)))
    return Challenge(challenge, row["phone"], code, expires)


def void(conn: Connection, challenge: str) -> None:
    conn.execute("UPDATE presence_challenges SET status = 'void' WHERE id = ?", (challenge,))


def check(conn: Connection, till_id: str, challenge: str, code: str,
          now: datetime) -> str | Refused:
    """The customer of a right code (the challenge becomes verified), or the refusal to
    answer: 422 for a wrong code while tries are left, 410 once void, used or expired.
    Returned, not raised: the caller commits the try it counted either way."""
    row = conn.execute(
        "SELECT customer_id, code_hash, expires_at, attempts, status FROM presence_challenges"
        " WHERE id = ? AND till_id = ?", (challenge, till_id)).fetchone()
    if row is None:
        return Refused(404, "no such SMS code was sent for this till")
    if row["status"] != "open":
        return Refused(410, f"this SMS code is {row['status']}")
    if now >= parse_iso(row["expires_at"]):
        void(conn, challenge)
        return Refused(410, "this SMS code has expired")
    if not hmac.compare_digest(row["code_hash"], _code_hash(challenge, code)):
        attempts = row["attempts"] + 1
        conn.execute("UPDATE presence_challenges SET attempts = ?, status = ? WHERE id = ?",
                     (attempts, "void" if attempts >= SMS_ATTEMPTS else "open", challenge))
        if attempts >= SMS_ATTEMPTS:
            return Refused(410, f"{SMS_ATTEMPTS} wrong codes: this SMS code is void")
        return Refused(422, f"wrong code: {SMS_ATTEMPTS - attempts} tries left")
    conn.execute("UPDATE presence_challenges SET status = 'verified' WHERE id = ?",
                 (challenge,))
    return str(row["customer_id"])


def check_entries(conn: Connection, till_id: str, entries: list[JournalEntry],
                  now: datetime, keys: CardKeyring | None) -> list[str]:
    """Re-check the presence proof of each sale that spends points; one alert for all that
    fail. `keys` None: app codes cannot be computed here, and are taken as they come."""
    problems = []
    for e in entries:
        if e.kind != "sale" or not e.redeemed:
            continue
        why = _proof_fails(conn, till_id, e, keys)
        if why:
            problems.append(f"entry {e.seq} (receipt {e.receipt_id}, {e.redeemed} points): {why}")
    if problems:
        raise_alert(conn, now, "presence",
                    "points spent without a presence proof that holds: "
                    + "; ".join(problems[:5])
                    + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""),
                    severity="critical", till_id=till_id)
    return problems


def _proof_fails(conn: Connection, till_id: str, e: JournalEntry,
                 keys: CardKeyring | None) -> str | None:
    proof = e.presence
    if proof is None:
        return "no proof that the customer was present"
    method = proof["method"]
    if method == "card":
        tokens = proof["tokens"]
        rows = conn.execute(
            f"SELECT customer_id FROM cards WHERE token IN ({', '.join('?' * len(tokens))})",
            tuple(tokens)).fetchall()
        if not any(r["customer_id"] == e.customer_id for r in rows):
            return "the card presented is not the customer's"
        return None
    if method == "sms":
        used = conn.execute(
            "UPDATE presence_challenges SET status = 'used', receipt_id = ?"
            " WHERE id = ? AND customer_id = ? AND till_id = ? AND status = 'verified'",
            (e.receipt_id, proof["challenge"], e.customer_id, till_id))
        return None if used.rowcount == 1 else "no SMS code verified for it at this till"
    step = proof["step"]
    try:
        sale_step = app_codes.step_at(parse_iso(e.at))
    except ValueError:
        return "the sale time cannot be read"
    if not sale_step - STEPS_BEFORE_SALE <= step <= sale_step + STEPS_AFTER_SALE:
        return "the app code is not of the sale's time"
    if keys is not None and e.customer_id is not None and not app_codes.matches(
            keys, e.customer_id, proof["code"], proof["key_version"], step):
        return "the app code is not the customer's"
    taken = conn.execute(
        "INSERT INTO presence_steps (customer_id, step, till_id, receipt_id)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (e.customer_id, step, till_id, e.receipt_id))
    return None if taken.rowcount == 1 else "the app code was used for another receipt"
