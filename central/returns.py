"""Returns anywhere in the chain: the central's copy of a sale, and leases on returning it.

While a till is online it asks here before every return, of its own sales too: the central
answers with the sale (lines, settlement, payments, the rule-set version) and what of it has
been returned, and holds a lease on the receipt until the till's journal entry confirms it,
or the till cancels, or the lease times out. One open lease per receipt: two tills returning
the same line at once cannot both succeed, and every return is priced from the quantities
returned before it, which is what keeps partial returns adding up exactly (protocol.rules
.returns prices by cumulative parts).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection
from central.errors import Refused
from protocol.journal import JournalEntry

LEASE_S = 300  # long enough for a paper change in the middle of a return receipt


def sale(conn: Connection, receipt_id: str) -> tuple[str, JournalEntry] | None:
    row = conn.execute(
        "SELECT till_id, body FROM journal WHERE receipt_id = ? AND kind = 'sale'",
        (receipt_id,),
    ).fetchone()
    if row is None:
        return None
    return row["till_id"], JournalEntry.from_encoded_body(row["body"])


def returned(conn: Connection, receipt_id: str) -> dict[int, int]:
    row = conn.execute("SELECT returned FROM sale_returns WHERE receipt_id = ?",
                       (receipt_id,)).fetchone()
    return {int(k): v for k, v in json.loads(row["returned"]).items()} if row else {}


def reserve(conn: Connection, till_id: str, receipt_id: str, lines: dict[int, int],
            now: datetime) -> dict[str, Any]:
    """Lease `lines` of a sale for a return at `till_id`; raises Refused with the reason.
    Inside a transaction; one process at a time leases a receipt."""
    conn.dialect.lock(conn, f"return:{receipt_id}")
    found = sale(conn, receipt_id)
    if found is None:
        raise Refused(404, "the central holds no sale with this receipt id (its till may not"
                           " have sent it yet)")
    sold_by, entry = found
    conn.execute("UPDATE return_leases SET status = 'released' WHERE receipt_id = ?"
                 " AND status = 'open' AND expires_at <= ?", (receipt_id, iso(now)))
    busy = conn.execute("SELECT till_id FROM return_leases WHERE receipt_id = ?"
                        " AND status = 'open'", (receipt_id,)).fetchone()
    if busy is not None:
        raise Refused(409, "this receipt is being returned at another till right now"
                           f" ({busy['till_id']}); try again when that return is done")
    before = returned(conn, receipt_id)
    sold = entry.detail.get("lines", [])
    for idx, qty in sorted(lines.items()):
        if not 0 <= idx < len(sold):
            raise Refused(409, f"return refused: no line {idx} on the receipt (it has"
                               f" {len(sold)} lines)")
        if before.get(idx, 0) + qty > sold[idx]["qty"]:
            raise Refused(409, f"return refused: line {idx} ({sold[idx]['sku']}): returning"
                               f" {qty} after {before.get(idx, 0)} would exceed the"
                               f" {sold[idx]['qty']} bought")
    lease = secrets.token_hex(12)
    expires = now + timedelta(seconds=LEASE_S)
    conn.execute(
        "INSERT INTO return_leases (id, receipt_id, till_id, lines, created_at, expires_at,"
        " status) VALUES (?, ?, ?, ?, ?, ?, 'open')",
        (lease, receipt_id, till_id, json.dumps({str(k): v for k, v in lines.items()}),
         iso(now), iso(expires)))
    return {
        "lease": lease, "expires_at": iso(expires), "sold_by": sold_by,
        "returned": {str(k): v for k, v in sorted(before.items())},
        "sale": {"receipt_id": entry.receipt_id, "at": entry.at, "store": entry.store,
                 "customer_id": entry.customer_id, "ruleset_version": entry.ruleset_version,
                 "fiscal_doc": entry.fiscal_doc, "lines": sold,
                 "settlement": entry.detail.get("settlement"),
                 "payments": entry.detail.get("payments")},
    }


def release(conn: Connection, till_id: str, lease: str) -> bool:
    """The till gave up the return (cancelled, not printed): the quantity is free again."""
    cur = conn.execute("UPDATE return_leases SET status = 'released' WHERE id = ?"
                       " AND till_id = ? AND status = 'open'", (lease, till_id))
    return cur.rowcount > 0


@dataclass(frozen=True)
class Backed:
    """What of a return's refund and clawback the central's record of the sale backs."""

    refund: int
    clawback: int
    problem: str | None = None  # what the till claimed beyond it, if anything


def backed(conn: Connection, e: JournalEntry) -> Backed:
    """Bound a return's points by the central's own record of its sale, not the till's word:
    the sale must exist and be the same customer's; the refund gives back at most what the
    ledger debited for it, less what the central or earlier returns gave back; the clawback
    takes at most what the sale earned, less earlier clawbacks. A till that claims more is
    a till with a bug or a stolen key minting points (or draining another customer's)."""
    assert e.original_receipt_id is not None and e.customer_id is not None
    original = e.original_receipt_id
    found = sale(conn, original)
    if found is None or found[1].customer_id != e.customer_id:
        refundable = clawable = 0
        whose = ("no sale the central holds" if found is None
                 else "another customer's sale")
    else:
        # Its redemption less what the central gave back of it (central.credits.give_back,
        # which books the refund under the sale's own receipt id).
        spent = conn.execute(
            "SELECT COALESCE(-SUM(points), 0) FROM ledger WHERE customer_id = ?"
            " AND receipt_id = ? AND kind IN ('redeem', 'refund')",
            (e.customer_id, original)).fetchone()[0]
        row = conn.execute("SELECT refunded, clawed_back FROM sale_returns"
                           " WHERE receipt_id = ?", (original,)).fetchone()
        before_refunded, before_clawed = (row[0], row[1]) if row else (0, 0)
        refundable = max(0, int(spent) - before_refunded)
        clawable = max(0, found[1].earned - before_clawed)
        whose = f"sale {original}"
    refund, clawback = min(e.refund, refundable), min(e.clawback, clawable)
    if (refund, clawback) == (e.refund, e.clawback):
        return Backed(refund, clawback)
    return Backed(refund, clawback, (
        f"return {e.receipt_id} claims a refund of {e.refund} and a clawback of {e.clawback}"
        f" for {whose}; the central's record backs {refundable} and {clawable}"))


def count_points(conn: Connection, original: str, refund: int, clawback: int) -> None:
    """Add what a return gave back and took back to its sale's tally (inside ingest)."""
    conn.execute(
        "INSERT INTO sale_returns (receipt_id, returned, refunded, clawed_back)"
        " VALUES (?, '{}', ?, ?) ON CONFLICT (receipt_id) DO UPDATE SET"
        " refunded = sale_returns.refunded + excluded.refunded,"
        " clawed_back = sale_returns.clawed_back + excluded.clawed_back",
        (original, refund, clawback))


def record(conn: Connection, till_id: str, entries: list[JournalEntry],
           now: datetime) -> None:
    """Ingested return entries (with their detail): count what each returned against its
    sale and confirm its lease. Runs inside the ingest transaction."""
    for e in entries:
        original = e.original_receipt_id
        lines = e.detail.get("lines") if isinstance(e.detail, dict) else None
        if not original or not isinstance(lines, dict):
            continue
        after = returned(conn, original)
        for k, qty in lines.items():
            after[int(k)] = after.get(int(k), 0) + int(qty)
        conn.execute(
            "INSERT INTO sale_returns (receipt_id, returned) VALUES (?, ?)"
            " ON CONFLICT (receipt_id) DO UPDATE SET returned = excluded.returned",
            (original, json.dumps({str(k): v for k, v in sorted(after.items())})))
        lease = e.detail.get("lease")
        if lease:
            conn.execute("UPDATE return_leases SET status = 'confirmed' WHERE id = ?",
                         (lease,))
        found = sale(conn, original)
        if found is not None:
            sold = found[1].detail.get("lines", [])
            over = [k for k, q in after.items() if k >= len(sold) or q > sold[k]["qty"]]
            if over:
                raise_alert(conn, now, "over-return",
                            f"receipt {original}: returns exceed the quantity sold on lines"
                            f" {over}", till_id=till_id, customer_id=e.customer_id)
