"""A customer's personal data on request (152-FZ): consents, export, erasure.

Consent to processing and, separately, to advertising messages is kept as a history: each
grant or withdrawal with its time, its source (a paper form at store 42, the app, the web)
and who recorded it. Export gives a customer everything the central holds about them.
Erasure removes what identifies the person (name, phone, birthday, segments, cards, the
views of them sent to tills) and keeps the account as a pseudonymous id, so that the
ledger, every balance and every report stay true; tills forget the cards with their next
customer delta. Journal entries of today's tills name customers by id only and carry no
personal value (protocol.rules.birthdays); those of earlier tills that carry the birthday are
stored redacted, with the till's bytes sealed under a key of the customer's own that erasure
destroys (central.journal_personal), so the hash chains need no rewriting and still verify.
The audit log keeps no personal value (central.audit); alerts, the ingest sequence and
approvals name customers by id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from central import customers, journal_personal, ledger
from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection, Row, transaction
from central.errors import Refused
from protocol import bounds

CONSENT_KINDS = ("processing", "advertising")


def record_consent(conn: Connection, customer_id: str, kind: object, granted: object,
                   source: object, actor: object, now: datetime) -> dict[str, Any]:
    """Record a grant or a withdrawal; returns the customer's consents as they now stand."""
    if kind not in CONSENT_KINDS:
        raise Refused(400, f"field 'kind' must be one of {', '.join(CONSENT_KINDS)}")
    if not isinstance(granted, bool):
        raise Refused(400, "field 'granted' must be true or false")
    bounds.text(source, "source", required=True)
    bounds.text(actor, "actor", required=True)
    with transaction(conn):
        customers.read(conn, customer_id)
        _insert_consent(conn, customer_id, str(kind), granted, str(source), str(actor), now)
    return consents(conn, customer_id)


def _insert_consent(conn: Connection, customer_id: str, kind: str, granted: bool,
                    source: str, actor: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO customer_consents (customer_id, kind, granted, at, source, actor)"
        " VALUES (?, ?, ?, ?, ?, ?)", (customer_id, kind, int(granted), iso(now), source, actor))


def consents(conn: Connection, customer_id: str) -> dict[str, Any]:
    """The latest word on each kind of consent (None: never asked)."""
    out: dict[str, Any] = dict.fromkeys(CONSENT_KINDS)
    for r in conn.execute(
        "SELECT kind, granted, at, source, actor FROM customer_consents WHERE customer_id = ?"
        " ORDER BY id", (customer_id,)):
        out[r["kind"]] = _consent(r)
    return out


def _consent(r: Row) -> dict[str, Any]:
    return {"granted": bool(r["granted"]), "at": r["at"], "source": r["source"],
            "actor": r["actor"]}


def export(conn: Connection, customer_id: str, now: datetime) -> dict[str, Any]:
    """Everything the central holds about the customer, as one document."""
    profile = customers.read(conn, customer_id, now)
    row = conn.execute("SELECT created_at, erased_at FROM customers WHERE id = ?",
                       (customer_id,)).fetchone()
    history = [{"kind": r["kind"], **_consent(r)} for r in conn.execute(
        "SELECT kind, granted, at, source, actor FROM customer_consents WHERE customer_id = ?"
        " ORDER BY id", (customer_id,))]
    movements = [dict(r) for r in conn.execute(
        "SELECT kind, points, at, till_id, receipt_id, actor, reason FROM ledger"
        " WHERE customer_id = ? ORDER BY id", (customer_id,))]
    purchases = [dict(r) for r in conn.execute(
        "SELECT receipt_id, kind, store, at, total, earned, redeemed, clawback, refund,"
        " original_receipt_id FROM receipts WHERE customer_id = ? ORDER BY at",
        (customer_id,))]
    return {"exported_at": iso(now), "customer": {**profile, "created_at": row["created_at"],
                                                  "erased_at": row["erased_at"]},
            "consents": history, "ledger": movements, "receipts": purchases,
            # personal values in journal entries of earlier tills, while their key lives
            "journal": journal_personal.personal_values(conn, customer_id)}


def erase(conn: Connection, customer_id: str, actor: object, reason: object,
          now: datetime) -> dict[str, Any]:
    """Erase what identifies the customer; the account, its ledger and balance stay under
    its pseudonymous id. Erasing twice changes nothing more."""
    bounds.text(actor, "actor", required=True)
    bounds.text(reason, "reason", required=True)
    with transaction(conn):
        customers.read(conn, customer_id)
        # Ingest seals a late entry's values under the key unless the customer is erased:
        # one waits for the other (PostgreSQL; SQLite's write lock covers it).
        ledger.lock_customers(conn, {customer_id})
        conn.execute(
            "UPDATE customers SET name = '', phone = NULL, birthday = NULL, segments = '[]',"
            " name_key = '', erased_at = COALESCE(erased_at, ?) WHERE id = ?",
            (iso(now), customer_id))
        cards = conn.execute("DELETE FROM cards WHERE customer_id = ?", (customer_id,)).rowcount
        conn.execute("DELETE FROM till_views WHERE customer_id = ?", (customer_id,))
        journal = journal_personal.forget(conn, customer_id)
        if journal["checked"] < journal["entries"]:
            # Sealed bytes that no longer give the entry's hash, or a stored body changed
            # since ingest: the digest records the bodies as found, and someone must look.
            raise_alert(conn, now, "journal-sealed-mismatch",
                        f"{journal['entries'] - journal['checked']} of {journal['entries']}"
                        f" sealed journal entries of {customer_id} did not check out at"
                        " erasure", severity="critical", customer_id=customer_id)
        for kind in CONSENT_KINDS:  # no processing, no messages, from now on
            _insert_consent(conn, customer_id, kind, False, "erasure request", str(actor), now)
        ledger.touch(conn, customer_id)  # tills drop the cards with their next delta
        raise_alert(conn, now, "personal-data-erased",
                    f"personal data of {customer_id} erased by {actor}: {reason}"[:500],
                    severity="info", customer_id=customer_id)
    erased_at = conn.execute("SELECT erased_at FROM customers WHERE id = ?",
                             (customer_id,)).fetchone()["erased_at"]
    return {"id": customer_id, "erased_at": erased_at, "cards_removed": cards,
            "balance": ledger.balance(conn, customer_id, now).to_dict(),
            # journal entries whose sealed values are now unreadable, checked and digested
            # first: what an auditor verifies their stored bodies against later
            "journal": journal}


__all__ = ["CONSENT_KINDS", "consents", "erase", "export", "record_consent"]
