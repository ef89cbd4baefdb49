"""What a customer sees of their own account: the balance in detail, the history with each
receipt's goods, and the personal offers they may take up.

Read-only views over tables other modules own (ledger, receipts, journal, the rule set):
the figures are the ledger's (central.ledger, protocol.balances), so the account shows what
head office and the tills see.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from central import customers, ledger, offer_grants, rulesets
from central.clock import iso, parse_iso
from central.db import Connection
from central.errors import Refused
from protocol import balances
from protocol.journal import JournalEntry
from protocol.wire import InvalidMessage

EXPIRING_WITHIN = timedelta(days=30)
NEVER = parse_iso(balances.NEVER)
MAX_HISTORY = 100


def balance(conn: Connection, customer_id: str, now: datetime) -> dict[str, Any]:
    """Available (debt already subtracted), pending with the date each part becomes
    spendable, what expires within 30 days with its dates, and the debt."""
    state = ledger.state_at(conn, customer_id, now)
    total = state.balance()
    pending = sorted(
        ({"points": lot.remaining,
          # a lot on hold (re-pricing, quarantine) has no date yet
          "activates_at": None if lot.activates_at >= NEVER else iso(lot.activates_at)}
         for lot in state.lots if not lot.active and lot.remaining > 0),
        key=lambda p: p["activates_at"] or balances.NEVER)
    horizon = now + EXPIRING_WITHIN
    expiring = sorted(
        ({"points": lot.remaining, "expires_at": iso(lot.expires_at)}
         for lot in state.lots
         if lot.active and not lot.expired and lot.remaining > 0 and lot.expires_at <= horizon),
        key=lambda e: e["expires_at"])
    return {"available": total.available, "pending": total.pending, "debt": total.debt,
            "pending_lots": pending,
            "expiring_within_30_days": sum(e["points"] for e in expiring),
            "expiring_lots": expiring, "as_of": iso(now)}


def history(conn: Connection, customer_id: str, limit: int = 20) -> dict[str, Any]:
    """The newest receipts with their goods, and the newest movements of points."""
    limit = max(1, min(limit, MAX_HISTORY))
    rows = conn.execute(
        "SELECT till_id, receipt_id, kind, store, at, total, earned, redeemed, clawback,"
        " refund, original_receipt_id FROM receipts WHERE customer_id = ?"
        " ORDER BY at DESC, receipt_id DESC LIMIT ?", (customer_id, limit)).fetchall()
    receipts = []
    for r in rows:
        receipts.append({
            "receipt_id": r["receipt_id"], "kind": r["kind"], "store": r["store"],
            "at": r["at"], "total": r["total"], "earned": r["earned"],
            "redeemed": r["redeemed"], "clawback": r["clawback"], "refund": r["refund"],
            "original_receipt_id": r["original_receipt_id"],
            "goods": _goods(conn, r["till_id"], r["receipt_id"], r["kind"],
                            r["original_receipt_id"])})
    # Who at head office made an adjustment is staff's business, not the customer's.
    movements = [{k: m[k] for k in ("kind", "points", "at", "receipt_id", "reason") if k in m}
                 for m in ledger.history(conn, customer_id, limit)]
    return {"receipts": receipts, "movements": movements}


def _entry(conn: Connection, till_id: str, receipt_id: str, kind: str) -> JournalEntry | None:
    row = conn.execute("SELECT body FROM journal WHERE till_id = ? AND receipt_id = ?"
                       " AND kind = ?", (till_id, receipt_id, kind)).fetchone()
    if row is None:
        return None
    try:
        return JournalEntry.from_encoded_body(bytes(row["body"]))
    except (InvalidMessage, ValueError, KeyError, TypeError):
        return None  # re-pricing reports a body it cannot read


def _sold_lines(entry: JournalEntry | None) -> list[dict[str, Any]]:
    lines = entry.detail.get("lines") if entry is not None else None
    if not isinstance(lines, list):
        return []
    out = []
    for ln in lines:
        if not isinstance(ln, dict):
            continue
        qty, price = ln.get("qty"), ln.get("price")
        if not isinstance(qty, int) or not isinstance(price, int):
            continue
        out.append({"sku": str(ln.get("sku", "")), "name": str(ln.get("name", "")),
                    "qty": qty, "price": price,
                    # as the fiscal printer rounds a line (agent.pos_input.DraftLine.amount)
                    "amount": (qty * price + 500) // 1000})
    return out


def _goods(conn: Connection, till_id: str, receipt_id: str, kind: str,
           original: str | None) -> list[dict[str, Any]]:
    entry = _entry(conn, till_id, receipt_id, kind)
    if kind == "sale":
        return _sold_lines(entry)
    # A return names the lines of the sale it takes back (index -> quantity).
    taken = entry.detail.get("lines") if entry is not None else None
    if not isinstance(taken, dict) or original is None:
        return []
    sale = conn.execute("SELECT till_id FROM receipts WHERE receipt_id = ? AND kind = 'sale'",
                        (original,)).fetchone()
    sold = _sold_lines(_entry(conn, sale["till_id"], original, "sale")) if sale else []
    out = []
    for index, qty in sorted(taken.items(), key=lambda kv: str(kv[0])):
        try:
            line = sold[int(index)]
        except (ValueError, IndexError):
            continue
        if isinstance(qty, int):
            out.append({**line, "qty": qty, "amount": (qty * line["price"] + 500) // 1000})
    return out


def offers(conn: Connection, customer_id: str, now: datetime) -> dict[str, Any]:
    """Personal offers of the current rule set the customer may take up (campaigns that
    need the offer activated and whose other customer conditions they meet), each with
    whether it is activated; and the offers their purchases earned, while they last."""
    profile = customers.read(conn, customer_id)
    activated = set(profile["offers"])
    segments, tier = set(profile["segments"]), profile["tier"]
    found: dict[str, dict[str, Any]] = {}
    for c in rulesets.current(conn).doc.get("campaigns", []):
        when = c.get("when") or {}
        names = when.get("offers") or []
        ends = when.get("to")
        if not names or (ends is not None and parse_iso(ends) <= now):
            continue
        if when.get("segments") and segments.isdisjoint(when["segments"]):
            continue
        if when.get("tiers") and tier not in when["tiers"]:
            continue
        for name in names:
            offer = found.setdefault(str(name), {"offer": str(name), "campaigns": [],
                                                 "until": ends, "activated": name in activated})
            offer["campaigns"].append(str(c.get("name") or c.get("id")))
    row = conn.execute("SELECT granted_offers FROM customers WHERE id = ?",
                       (customer_id,)).fetchone()
    live = offer_grants.live(row["granted_offers"], now)
    granted = json.loads(row["granted_offers"])
    return {"offers": sorted(found.values(), key=lambda o: o["offer"]),
            "earned": [{"offer": o, "expires_at": granted[o]["expires"]}
                       for o in sorted(live)]}


def activatable(conn: Connection, customer_id: str, offer: str, now: datetime) -> None:
    """Refused unless the offer is one of those the customer may take up."""
    if offer not in {o["offer"] for o in offers(conn, customer_id, now)["offers"]}:
        raise Refused(404, "field 'offer': no such personal offer for this customer")
