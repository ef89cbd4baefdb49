"""The outbox of messages to customers, and what the central knows of how to reach them.

Every message has a stable key saying what it is about (`expiring:{customer}:{day}`,
`return:{customer}:{receipt}`): it is inserted once (the key is unique), whoever finds the
reason for it and however often. Senders in any number of processes claim due messages one
row at a time (a conditional UPDATE: on PostgreSQL the second claimer re-reads the row and
finds it taken), each claim with a lease; they send, then mark the row sent under their
claim. A sender that dies between the two leaves a claim whose lease runs out: the next
sender takes it over and sends again, and that is counted (`reclaimed`), since the first
may have sent it. So a message is sent at least once and a duplicate has one cause, a send
whose outcome was never recorded: a crash, or a gateway that took the message but whose
reply was lost (`uncertain`). A gateway that is down puts the message back with a later
due time (exponential backoff); nothing is dropped for it.

Tables owned here: messages, message_contacts, message_seen, message_cursors,
message_settings, message_receipt_lines (message_templates belongs to central.message_templates).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from central.clock import iso
from central.db import Connection, Row, transaction
from central.errors import Refused
from protocol import bounds

PURPOSES = ("service", "advertising")
# In the order a customer is reached by; "receipt": a line on their next fiscal receipt, at
# whichever till of the chain they buy (every customer with a card can be reached so).
CHANNELS = ("email", "sms", "push", "receipt")
STATUSES = ("pending", "sending", "sent", "skipped", "failed")

# Longer than any channel's timeout: a live sender never loses its claim mid-send.
LEASE = timedelta(minutes=5)
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)


@dataclass(frozen=True)
class Message:
    id: int
    key: str
    kind: str
    customer_id: str
    purpose: str
    channel: str
    store: str | None
    params: dict[str, Any]
    claim: str
    attempts: int
    failures: int
    reclaimed: int

    @classmethod
    def of(cls, r: Row) -> Message:
        return cls(r["id"], r["msg_key"], r["kind"], r["customer_id"], r["purpose"],
                   r["channel"], r["store"], json.loads(r["params"]), r["claim"] or "",
                   r["attempts"], r["failures"], r["reclaimed"])


@dataclass(frozen=True)
class Draft:
    """A message a trigger found a reason for; `key` makes it once."""

    key: str
    kind: str
    customer_id: str
    purpose: str
    params: dict[str, Any] = field(default_factory=dict)
    store: str | None = None


def enqueue(conn: Connection, draft: Draft, now: datetime) -> bool:
    """Add the message unless its key is already in the outbox; False if it was. The channel
    is the customer's best one now (e-mail, else SMS, else push); a customer who cannot be
    reached gets no message (False)."""
    if draft.purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    channel = best_channel(conn, draft.customer_id)
    if channel is None:
        return False
    return conn.execute(
        "INSERT INTO messages (msg_key, kind, customer_id, purpose, channel, store, params,"
        " status, created_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
        " ON CONFLICT (msg_key) DO NOTHING",
        (draft.key, draft.kind, draft.customer_id, draft.purpose, channel, draft.store,
         json.dumps(draft.params, sort_keys=True), iso(now), iso(now))).rowcount == 1


def claim_due(conn: Connection, now: datetime, limit: int = 20,
              lease: timedelta = LEASE) -> list[Message]:
    """Claim up to `limit` messages due by `now` for one sender: pending ones, and those
    whose claim's lease ran out (its sender died; taking one over is counted). Each claim
    is its own statement, committed at once, so a crash after it leaves a lease, not a
    lock."""
    t = iso(now)
    candidates = conn.execute(
        "SELECT id FROM messages WHERE status = 'pending' AND due_at <= ?"
        " UNION ALL SELECT id FROM messages WHERE status = 'sending' AND lease_until < ?"
        " ORDER BY id LIMIT ?", (t, t, limit)).fetchall()
    claim = uuid.uuid4().hex
    claimed: list[Message] = []
    for c in candidates:
        # The condition is checked again on the row itself: of two senders that chose it,
        # one updates it and the other finds it no longer due.
        row = conn.execute(
            "UPDATE messages SET claim = ?, lease_until = ?, attempts = attempts + 1,"
            " reclaimed = reclaimed + CASE WHEN status = 'sending' THEN 1 ELSE 0 END,"
            " status = 'sending'"
            " WHERE id = ? AND ((status = 'pending' AND due_at <= ?)"
            "                   OR (status = 'sending' AND lease_until < ?))"
            " RETURNING *", (claim, iso(now + lease), c["id"], t, t)).fetchone()
        if row is not None:
            claimed.append(Message.of(row))
    return claimed


def _settle(conn: Connection, m: Message, sets: str, params: tuple[Any, ...]) -> bool:
    # Only under our own claim: a sender whose lease ran out has lost the message to
    # another, which will record its own outcome.
    return conn.execute(
        f"UPDATE messages SET {sets}, claim = NULL, lease_until = NULL"
        " WHERE id = ? AND claim = ? AND status = 'sending'",
        (*params, m.id, m.claim)).rowcount == 1


def mark_sent(conn: Connection, m: Message, now: datetime, provider_id: str = "") -> bool:
    return _settle(conn, m, "status = 'sent', sent_at = ?, provider_id = ?",
                   (iso(now), provider_id[:200]))


def backoff(failures: int) -> timedelta:
    """The wait after the `failures`-th failure in a row: 30 s, 1 min, 2 min, ... 1 h."""
    return min(BACKOFF_FIRST * (2 ** min(max(failures, 1) - 1, 20)), BACKOFF_MAX)


def retry_later(conn: Connection, m: Message, now: datetime, why: str,
                uncertain: bool = False) -> datetime:
    """The channel failed: due again after the backoff. `uncertain`: the gateway may have
    taken it (its reply was lost), so sending again may duplicate it: counted."""
    due = now + backoff(m.failures + 1)
    _settle(conn, m, "status = 'pending', due_at = ?, failures = failures + 1, note = ?,"
            " uncertain = uncertain + ?", (iso(due), why[:500], int(uncertain)))
    return due


def defer(conn: Connection, m: Message, until: datetime, why: str) -> None:
    """Not now (quiet hours): due again at `until`; not a failure."""
    _settle(conn, m, "status = 'pending', due_at = ?, note = ?", (iso(until), why[:500]))


def skip(conn: Connection, m: Message, why: str) -> None:
    """Never to be sent (no consent, opted out, no address left): kept, with the reason."""
    _settle(conn, m, "status = 'skipped', note = ?", (why[:500],))


def fail(conn: Connection, m: Message, why: str) -> None:
    """The gateway refused the message itself (a malformed address): sending it again
    would be refused again."""
    _settle(conn, m, "status = 'failed', note = ?", (why[:500],))


def counts(conn: Connection) -> dict[str, int]:
    """Messages by status, and the possible duplicates: sent after a dead sender's claim
    was taken over, or after a reply that never came."""
    out = dict.fromkeys(STATUSES, 0)
    for r in conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status"):
        out[r[0]] = int(r[1])
    dup = conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'sent'"
                       " AND (reclaimed > 0 OR uncertain > 0)").fetchone()[0]
    out["possible_duplicates"] = int(dup)
    return out


LIST_FILTERS = ("status", "kind", "customer_id", "channel")


def listing(conn: Connection, filters: dict[str, str], before: int | None,
            limit: int) -> list[dict[str, Any]]:
    """The outbox, newest first, for support and audit (the params carry no address)."""
    where, args = [], []
    for name, value in filters.items():
        if name not in LIST_FILTERS:
            raise ValueError(name)
        where.append(f"{name} = ?")
        args.append(value)
    if before is not None:
        where.append("id < ?")
        args.append(before)
    sql = ("SELECT id, msg_key, kind, customer_id, purpose, channel, store, params, status,"
           " created_at, due_at, attempts, failures, reclaimed, uncertain, sent_at, note"
           " FROM messages")
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["key"] = d.pop("msg_key")
        d["params"] = json.loads(d["params"])
        out.append(d)
    return out


# --- how a customer is reached ---------------------------------------------------------

@dataclass(frozen=True)
class Contacts:
    email: str | None = None
    phone: str | None = None
    push_token: str | None = None
    language: str | None = None
    home_store: str | None = None
    service_opt_out: bool = False


def contacts(conn: Connection, customer_id: str) -> Contacts | None:
    """How the customer is reached; None for no such customer, or one erased (152-FZ:
    nothing is sent to a person whose data was erased)."""
    r = conn.execute(
        "SELECT c.phone, c.erased_at, m.email, m.push_token, m.language, m.home_store,"
        " m.service_opt_out FROM customers c"
        " LEFT JOIN message_contacts m ON m.customer_id = c.id WHERE c.id = ?",
        (customer_id,)).fetchone()
    if r is None or r["erased_at"] is not None:
        return None
    return Contacts(r["email"], r["phone"], r["push_token"], r["language"], r["home_store"],
                    bool(r["service_opt_out"]))


def address(c: Contacts, channel: str) -> str | None:
    if channel == "receipt":
        return "receipt"  # the customer's card, at whichever till
    return {"email": c.email, "sms": c.phone, "push": c.push_token}.get(channel)


def best_channel(conn: Connection, customer_id: str) -> str | None:
    c = contacts(conn, customer_id)
    if c is None:
        return None
    return next((ch for ch in CHANNELS if address(c, ch)), None)


CONTACT_FIELDS = ("email", "push_token", "language", "home_store", "service_opt_out")
LANGUAGES = ("ru", "en")


def set_contacts(conn: Connection, customer_id: str, changes: dict[str, Any], source: object,
                 actor: str, now: datetime) -> Contacts:
    """Change how the customer is reached (and whether they take service messages), with
    the change's source, as for consents. The customer is marked changed, so the welcome
    trigger sees a customer who now has contact details."""
    from central import ledger  # marks the change for the customers' follower

    unknown = set(changes) - set(CONTACT_FIELDS)
    if unknown:
        raise Refused(400, f"field '{sorted(unknown)[0]}' is not one of"
                           f" {', '.join(CONTACT_FIELDS)}")
    bounds.text(source, "source", required=True)
    values = {k: _contact_value(k, v) for k, v in changes.items()}
    with transaction(conn):
        if conn.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone() \
                is None:
            raise Refused(404, "no such customer")
        conn.execute(
            "INSERT INTO message_contacts (customer_id, updated_at, source, actor)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET"
            " updated_at = excluded.updated_at, source = excluded.source,"
            " actor = excluded.actor", (customer_id, iso(now), str(source), actor))
        for k, v in values.items():  # names come from CONTACT_FIELDS only
            conn.execute(f"UPDATE message_contacts SET {k} = ? WHERE customer_id = ?",
                         (v, customer_id))
        ledger.touch(conn, customer_id)
    found = contacts(conn, customer_id)
    assert found is not None
    return found


def forget(conn: Connection, customer_id: str) -> None:
    """The customer's personal data was erased (central.personal_data.erase): how they were
    reached goes too, and nothing that waited for them will be sent."""
    conn.execute("DELETE FROM message_contacts WHERE customer_id = ?", (customer_id,))
    conn.execute("UPDATE messages SET status = 'skipped', note = ? WHERE customer_id = ?"
                 " AND status = 'pending'", ("the customer's personal data was erased",
                                             customer_id))


def _contact_value(name: str, value: object) -> object:
    if name == "service_opt_out":
        if not isinstance(value, bool):
            raise Refused(400, "field 'service_opt_out' must be true or false")
        return int(value)
    if value is None:
        return None
    if name == "language":
        if value not in LANGUAGES:
            raise Refused(400, f"field 'language' must be one of {', '.join(LANGUAGES)}")
        return value
    text = bounds.text(value, name, max_len=254, required=True)
    if name == "email" and ("@" not in text or any(ch.isspace() for ch in text)
                            or text.startswith("@") or text.endswith("@")):
        raise Refused(400, "field 'email' must be an e-mail address")
    return text


# --- settings ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    quiet_from: time = time(21, 0)
    quiet_to: time = time(9, 0)
    expiring_days: int = 7  # "your points expire in N days"
    idle_days: int = 60  # win-back after N days without a purchase


def settings(conn: Connection) -> Settings:
    r = conn.execute("SELECT * FROM message_settings WHERE id = 1").fetchone()
    if r is None:
        return Settings()
    return Settings(time.fromisoformat(r["quiet_from"]), time.fromisoformat(r["quiet_to"]),
                    r["expiring_days"], r["idle_days"])


def save_settings(conn: Connection, body: dict[str, Any], actor: str,
                  now: datetime) -> Settings:
    current = settings(conn)
    unknown = set(body) - {"quiet_from", "quiet_to", "expiring_days", "idle_days"}
    if unknown:
        raise Refused(400, f"field '{sorted(unknown)[0]}' is not a message setting")
    quiet = {}
    for name in ("quiet_from", "quiet_to"):
        value = body.get(name, getattr(current, name).strftime("%H:%M"))
        try:
            if not isinstance(value, str) or len(value) != 5:
                raise ValueError
            quiet[name] = time.fromisoformat(value)
        except ValueError:
            raise Refused(400, f"field '{name}' must be a time of day, HH:MM") from None
    days = {}
    for name in ("expiring_days", "idle_days"):
        value = body.get(name, getattr(current, name))
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 366:
            raise Refused(400, f"field '{name}' must be a whole number of days, 1 to 366")
        days[name] = value
    new = Settings(quiet["quiet_from"], quiet["quiet_to"], days["expiring_days"],
                   days["idle_days"])
    conn.execute(
        "INSERT INTO message_settings (id, quiet_from, quiet_to, expiring_days, idle_days,"
        " updated_at, actor) VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
        " quiet_from = excluded.quiet_from, quiet_to = excluded.quiet_to,"
        " expiring_days = excluded.expiring_days, idle_days = excluded.idle_days,"
        " updated_at = excluded.updated_at, actor = excluded.actor",
        (new.quiet_from.strftime("%H:%M"), new.quiet_to.strftime("%H:%M"), new.expiring_days,
         new.idle_days, iso(now), actor))
    return new


# --- the triggers' cursors and what they remember ----------------------------------------

def cursor(conn: Connection, name: str) -> str:
    return str(conn.execute("SELECT position FROM message_cursors WHERE name = ?",
                            (name,)).fetchone()[0])


def move_cursor(conn: Connection, name: str, old: str, new: str) -> bool:
    """First thing in a trigger's transaction: False if another process moved it meanwhile
    (then roll back: that process did this work), as central.ingest_log.claim."""
    return conn.execute("UPDATE message_cursors SET position = ? WHERE name = ? AND"
                        " position = ?", (new, name, old)).rowcount == 1


@dataclass(frozen=True)
class Seen:
    """What the customers' trigger last saw of a customer: the tier, the offers told of."""

    tier: str | None
    offers: frozenset[str]


def seen(conn: Connection, customer_ids: list[str]) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    for start in range(0, len(customer_ids), 500):
        chunk = customer_ids[start:start + 500]
        for r in conn.execute("SELECT customer_id, tier, offers FROM message_seen WHERE"
                              f" customer_id IN ({','.join('?' * len(chunk))})", chunk):
            out[r["customer_id"]] = Seen(r["tier"], frozenset(json.loads(r["offers"])))
    return out


def remember(conn: Connection, customer_id: str, now_seen: Seen) -> None:
    conn.execute("INSERT INTO message_seen (customer_id, tier, offers) VALUES (?, ?, ?)"
                 " ON CONFLICT (customer_id) DO UPDATE SET tier = excluded.tier,"
                 " offers = excluded.offers",
                 (customer_id, now_seen.tier, json.dumps(sorted(now_seen.offers))))


# --- lines on the customer's next fiscal receipt -----------------------------------------

# A line waits this long for the customer to come; then it is no longer sent to tills.
RECEIPT_LINE_DAYS = 30
MAX_RECEIPT_LINES = 2  # per customer in a delta: the receipt is not a newsletter


def queue_receipt_line(conn: Connection, m: Message, text: str, now: datetime) -> str:
    """"Send" by the receipt channel: the line goes to every till with the customer's next
    delta (central.deltas); the first till to print it says so in its journal entry."""
    from central import ledger

    with transaction(conn):
        conn.execute("INSERT INTO message_receipt_lines (msg_key, customer_id, text,"
                     " queued_at) VALUES (?, ?, ?, ?) ON CONFLICT (msg_key) DO NOTHING",
                     (m.key, m.customer_id, text, iso(now)))
        ledger.touch(conn, m.customer_id)
    return "queued for the next receipt"


def receipt_lines(conn: Connection, customer_ids: list[str],
                  now: datetime) -> dict[str, list[dict[str, str]]]:
    """The lines waiting for each customer's next receipt, oldest first: what a delta
    carries."""
    out: dict[str, list[dict[str, str]]] = {}
    since = iso(now - timedelta(days=RECEIPT_LINE_DAYS))
    for start in range(0, len(customer_ids), 500):
        chunk = customer_ids[start:start + 500]
        for r in conn.execute(
                "SELECT customer_id, msg_key, text FROM message_receipt_lines"
                f" WHERE customer_id IN ({','.join('?' * len(chunk))})"
                " AND printed_at IS NULL AND queued_at >= ? ORDER BY queued_at, msg_key",
                (*chunk, since)):
            lines = out.setdefault(r["customer_id"], [])
            if len(lines) < MAX_RECEIPT_LINES:
                lines.append({"key": r["msg_key"], "text": r["text"]})
    return out


def waiting_for_receipts(conn: Connection, customer_ids: set[str]) -> set[str]:
    """Which of these customers have a line waiting (the journal follower reads the
    receipts of these alone)."""
    listed = sorted(customer_ids)
    out: set[str] = set()
    for start in range(0, len(listed), 500):
        chunk = listed[start:start + 500]
        out.update(r[0] for r in conn.execute(
            "SELECT DISTINCT customer_id FROM message_receipt_lines WHERE printed_at IS NULL"
            f" AND customer_id IN ({','.join('?' * len(chunk))})", chunk))
    return out


def printed(conn: Connection, customer_id: str, keys: list[str], till_id: str,
            receipt_id: str, at: str) -> int:
    """A till printed these lines on a receipt: no till gets them again (the customer is
    marked changed). A line printed twice (two tills offline at once) is counted: the
    second print is recorded in the message's `uncertain`."""
    from central import ledger

    done = 0
    for key in keys:
        n = conn.execute("UPDATE message_receipt_lines SET printed_at = ?, till_id = ?,"
                         " receipt_id = ? WHERE msg_key = ? AND customer_id = ?"
                         " AND printed_at IS NULL",
                         (at, till_id, receipt_id, key, customer_id)).rowcount
        if n == 0:
            conn.execute("UPDATE messages SET uncertain = uncertain + 1 WHERE msg_key = ?"
                         " AND customer_id = ?", (key, customer_id))
        done += n
    ledger.touch(conn, customer_id)
    return done
