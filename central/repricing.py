"""The central re-prices every sale a till journalled, with the rule-set version the till used.

A till prices offline and the central takes its word into the ledger at once (ingest must
stay fast); this check runs after, off the ingest path, in chunks. It settles the receipt's
lines again with the same rules, the tier the till saw and the points the customer spent,
and raises a 'repricing-mismatch' alert when the points earned or spent differ from what
the till journalled: a till with a bug, a stale or tampered rule set, or a forged entry
signed with a stolen key.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central import offer_grants
from central.alerts import raise_alert
from central.clock import parse_iso
from protocol import rules
from protocol.wire import InvalidMessage, unpack

CHUNK = 200


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str = ""


class RuleSets:
    """Compiled rule sets by version; every version is kept in the rulesets table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._compiled: dict[int, rules.RuleSet | None] = {}

    def get(self, version: int) -> rules.RuleSet | None:
        if version not in self._compiled:
            row = self.conn.execute("SELECT doc FROM rulesets WHERE version = ?",
                                    (version,)).fetchone()
            self._compiled[version] = (rules.compile_ruleset(json.loads(row["doc"]))
                                       if row else None)
        return self._compiled[version]


def check_entry(entry: dict[str, Any], ruleset: rules.RuleSet | None,
                segments: frozenset[str], birthday: str | None = None,
                offers: frozenset[str] = frozenset()) -> Verdict:
    """Re-price one journalled sale (pure): does the till's account of it hold?"""
    if ruleset is None:
        return Verdict(False, f"rule set version {entry['ruleset_version']} is not known here")
    detail = entry.get("detail") or {}
    settled, lines = detail.get("settlement"), detail.get("lines")
    if not isinstance(settled, dict) or not isinstance(lines, list):
        return Verdict(False, "the entry carries no settlement and lines to re-price")
    try:
        receipt = rules.Receipt(lines=tuple(
            rules.ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                              # rounded half up to the kopeck, as the fiscal printer does
                              amount=(ln["qty"] * ln["price"] + 500) // 1000,
                              category=ln.get("category", ""), brand=ln.get("brand", ""),
                              flags=frozenset(ln.get("flags", ())))
            for ln in lines), store=entry["store"])
        known = detail.get("customer")
        if isinstance(known, dict):
            # The till's own view of the customer (profile, balance, allowances): the check
            # is that the rules were applied to it faithfully, to a profile the central gave.
            customer = rules.Customer.from_dict(known)
            if claimed := _unfounded(customer, segments, birthday, offers):
                return Verdict(False, f"the till priced with {claimed}, which the central"
                                      " never gave it")
        else:
            customer = rules.Customer(id=entry["customer_id"], balance=entry["redeemed"],
                                      tier=settled.get("tier"), segments=segments)
        again = rules.settle(ruleset, receipt, customer, parse_iso(entry["at"]),
                             entry["redeemed"])
    except (KeyError, TypeError, ValueError, rules.InputError, rules.RedemptionError) as e:
        return Verdict(False, f"cannot be re-priced: {type(e).__name__}: {e}")
    earned = sum(lot.points for lot in again.lots if lot.unit == again.unit and lot.points > 0)
    if earned != entry["earned"] or again.redeemed != entry["redeemed"]:
        return Verdict(False, f"till journalled earned {entry['earned']}, redeemed"
                              f" {entry['redeemed']}; the rules give earned {earned}, redeemed"
                              f" {again.redeemed}")
    return Verdict(True)


def _unfounded(customer: rules.Customer, segments: frozenset[str], birthday: str | None,
               offers: frozenset[str]) -> str | None:
    """What of the till's view of the customer the central's profile does not back."""
    if extra := customer.segments - segments:
        return f"segments {sorted(extra)}"
    if extra := customer.activated_offers - offers:
        return f"offers {sorted(extra)}"
    if customer.birthday is not None and customer.birthday.isoformat() != birthday:
        return "a birthday"
    return None


def reprice_pending(conn: sqlite3.Connection, now: datetime, limit: int = CHUNK,
                    cache: RuleSets | None = None) -> int:
    """Check the next `limit` journalled entries; returns how many were looked at."""
    cache = cache or RuleSets(conn)
    start = conn.execute("SELECT last_rowid FROM repricing WHERE name = 'journal'").fetchone()[0]
    rows = conn.execute(
        "SELECT j.rowid AS rid, j.till_id, j.seq, j.body, c.segments, c.birthday, c.offers,"
        " c.granted_offers"
        " FROM journal j"
        " LEFT JOIN customers c ON c.id = j.customer_id"
        " WHERE j.rowid > ? ORDER BY j.rowid LIMIT ?", (start, limit)).fetchall()
    if not rows:
        return 0
    checked = mismatches = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for r in rows:
            try:
                entry = unpack(r["body"])
            except InvalidMessage as e:
                # Ingest checks an entry's own fields but only the framing of its detail
                # (JournalEntry.from_encoded_body): a detail that does not decode is a till
                # with a bug or a forged entry, and is reported, not passed over.
                mismatches += 1
                raise_alert(conn, now, "repricing-mismatch",
                            f"entry {r['seq']}: the journalled body cannot be read: {e}",
                            till_id=r["till_id"])
                continue
            if entry.get("kind") != "sale" or entry.get("customer_id") is None:
                continue  # returns are priced from their sale; non-members earn nothing
            checked += 1
            segments = frozenset(json.loads(r["segments"])) if r["segments"] else frozenset()
            offers = frozenset(json.loads(r["offers"])) if r["offers"] else frozenset()
            if r["granted_offers"]:
                offers |= offer_grants.ever_granted(r["granted_offers"])
            verdict = check_entry(entry, cache.get(entry["ruleset_version"]), segments,
                                  r["birthday"], offers)
            if not verdict.ok:
                mismatches += 1
                raise_alert(conn, now, "repricing-mismatch",
                            f"entry {r['seq']} (receipt {entry['receipt_id']}): "
                            f"{verdict.message}",
                            till_id=r["till_id"], customer_id=entry["customer_id"])
        conn.execute(
            "UPDATE repricing SET last_rowid = ?, checked = checked + ?,"
            " mismatches = mismatches + ? WHERE name = 'journal'",
            (rows[-1]["rid"], checked, mismatches))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(rows)


def progress(conn: sqlite3.Connection) -> dict[str, int]:
    row = conn.execute("SELECT last_rowid, checked, mismatches FROM repricing"
                       " WHERE name = 'journal'").fetchone()
    behind = conn.execute("SELECT COUNT(*) FROM journal WHERE rowid > ?",
                          (row["last_rowid"],)).fetchone()[0]
    return {"checked": row["checked"], "mismatches": row["mismatches"], "behind": behind}
