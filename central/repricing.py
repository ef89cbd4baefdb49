"""The central re-prices every sale a till journalled, and credits only what it finds.

A till prices offline and the central stores its entries at once (ingest must stay fast);
the points a sale claims wait, provisional, until this check has run (central.credits). It
settles the receipt's lines again with the same rules and the customer as the till saw
them, and compares the points earned and spent with what the till journalled. The till's
view of the customer is honoured only as far as a view the central sent that very till
backs it, the rule-set version only if it was the newest that till had been sent, and the
sale time is the one ingest accepted (central.ingest). A sale that re-prices differently
stays journalled but is not credited, and its till is quarantined (central.quarantine): a
till with a bug, a stale or tampered rule set, or a forged entry signed with a stolen key.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central import blocks, credits, deliveries, fraud_watch, ingest_log, ledger, quarantine
from central.alerts import raise_alert
from central.channels import is_virtual_till
from central.clock import parse_iso
from central.db import Connection, Row, Unavailable, transaction
from protocol import rules
from protocol.wire import InvalidMessage, unpack

log = logging.getLogger(__name__)
CHUNK = 200


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str = ""
    lots: tuple[rules.Lot, ...] = ()  # what to credit, in the programme's unit, when ok


class RuleSets:
    """Compiled rule sets by version; every version is kept in the rulesets table."""

    def __init__(self, conn: Connection) -> None:
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
                customer: rules.Customer, sold_at: datetime) -> Verdict:
    """Re-price one journalled sale (pure) for `customer` as the central backs them."""
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
        again = rules.settle(ruleset, receipt, customer, sold_at, entry["redeemed"])
    except (KeyError, TypeError, ValueError, rules.InputError, rules.RedemptionError) as e:
        return Verdict(False, f"cannot be re-priced: {type(e).__name__}: {e}")
    lots = tuple(lot for lot in again.lots if lot.unit == again.unit and lot.points > 0)
    earned = sum(lot.points for lot in lots)
    if earned != entry["earned"] or again.redeemed != entry["redeemed"]:
        return Verdict(False, f"till journalled earned {entry['earned']}, redeemed"
                              f" {entry['redeemed']}; the rules give earned {earned}, redeemed"
                              f" {again.redeemed}")
    return Verdict(True, lots=lots)


def _judge(conn: Connection, cache: RuleSets, till_id: str, entry: dict[str, Any],
           sold_at: datetime) -> Verdict:
    """check_entry, after checking what the till priced with against what it was sent."""
    if why := deliveries.ruleset_refusal(conn, till_id, entry["ruleset_version"], sold_at):
        return Verdict(False, f"the till priced with {why}")
    known = (entry.get("detail") or {}).get("customer")
    if not isinstance(known, dict):
        return Verdict(False, "the entry carries no view of the customer to re-price with")
    try:
        customer = rules.Customer.from_dict(known)
    except (TypeError, ValueError, rules.InputError) as e:
        return Verdict(False, f"cannot be re-priced: {type(e).__name__}: {e}")
    if customer.id != entry["customer_id"]:
        return Verdict(False, "the entry was priced for another customer")
    # The till journals which birthday windows held, not the birthday: the central prices
    # with the birthday it sent, and a window the till claimed otherwise shows as a mismatch.
    customer = dataclasses.replace(
        customer, birthday_within=None,
        birthday=deliveries.sent_birthday(conn, till_id, customer.id, sold_at))
    # What this till's returns gave back, as the ledger booked it (central.returns.backed),
    # not as the till claimed it: a claimed refund must not widen the balance honoured.
    refunded = conn.execute(
        "SELECT COALESCE(SUM(l.points), 0) FROM ledger l JOIN receipts r"
        " ON r.till_id = l.till_id AND r.receipt_id = l.receipt_id AND r.kind = 'return'"
        " WHERE l.customer_id = ? AND l.till_id = ? AND l.kind = 'refund'",
        (customer.id, till_id)).fetchone()[0]
    if why := deliveries.view_refusal(conn, till_id, customer, sold_at, refunded):
        return Verdict(False, f"the till priced with {why}, which the central never gave it")
    return check_entry(entry, cache.get(entry["ruleset_version"]), customer, sold_at)


def _presented_card(entry: dict[str, Any]) -> list[str]:
    """The tokens of the card the entry's proof of presence names (none without one)."""
    proof = entry.get("presence")
    if isinstance(proof, dict) and proof.get("method") == "card":
        return [t for t in proof.get("tokens") or () if isinstance(t, str)]
    return []


def _spent(conn: Connection, till_id: str, receipt_id: str) -> int:
    """What the ledger debited for this sale (its redemption), from the ledger itself: the
    body of an entry that did not re-price is not to be trusted, nor perhaps readable."""
    row = conn.execute(
        "SELECT COALESCE(-SUM(points), 0) FROM ledger WHERE till_id = ? AND receipt_id = ?"
        " AND kind = 'redeem'", (till_id, receipt_id)).fetchone()
    return int(row[0])


def reprice_pending(conn: Connection, now: datetime, limit: int = CHUNK,
                    cache: RuleSets | None = None) -> int:
    """Check the next `limit` journalled entries and credit them; returns how many were
    looked at."""
    cache = cache or RuleSets(conn)
    start = conn.execute("SELECT ingest_seq FROM repricing WHERE name = 'journal'"
                         ).fetchone()[0]
    # In the order ingest committed them (central.ingest_log), so none is passed over.
    page = ingest_log.entries_after(
        conn, start, limit,
        "j.till_id, j.seq, j.receipt_id, j.customer_id, j.body, j.sold_at")
    rows = page.rows
    if not rows:
        return 0
    checked = mismatches = 0
    with transaction(conn):
        if not ingest_log.claim(conn, "repricing", "journal", start, page.upto):
            return 0  # another process re-priced these meanwhile
        ledger.lock_customers(conn, {r["customer_id"] for r in rows if r["customer_id"]})
        for r in rows:
            # Each entry in a savepoint of its own: whatever one entry does, it is reported
            # and passed, and re-pricing goes on with the next (it never stops on one).
            try:
                with conn.savepoint("entry"):
                    outcome = _reprice_one(conn, cache, r, now)
            except Unavailable:
                # The database failed, not the entry: judging it a mismatch would withhold a
                # customer's points and quarantine the till. The round is rolled back whole
                # and the job tries again.
                raise
            except Exception as e:
                log.exception("re-pricing entry %s of till %s failed", r["seq"], r["till_id"])
                outcome = _failed(conn, r, f"cannot be re-priced: {type(e).__name__}: {e}",
                                  now)
            if outcome is not None:
                checked += 1
                mismatches += not outcome
        conn.execute(
            "UPDATE repricing SET checked = checked + ?, mismatches = mismatches + ?"
            " WHERE name = 'journal'", (checked, mismatches))
    return len(rows)


def _reprice_one(conn: Connection, cache: RuleSets, r: Row,
                 now: datetime) -> bool | None:
    """Re-price one journalled entry and credit or withhold it: True if it matched, False
    if not, None if there was nothing to re-price."""
    try:
        entry = unpack(r["body"])
        if not isinstance(entry, dict):
            raise InvalidMessage("not a map")
    except InvalidMessage as e:
        # Ingest checks an entry's own fields but only the framing of its detail
        # (JournalEntry.from_encoded_body): a detail that does not decode is a till
        # with a bug or a forged entry, and is reported, not passed over.
        verdict = Verdict(False, f"the journalled body cannot be read: {e}")
    else:
        if entry.get("kind") != "sale" or entry.get("customer_id") is None:
            return None  # returns are priced from their sale; non-members earn nothing
        if is_virtual_till(r["till_id"]):
            return None  # a channel's order: priced and credited by the central itself
        sold_at = parse_iso(r["sold_at"] or entry["at"])
        if why := blocks.sale_refusal(conn, r["till_id"], entry["customer_id"], sold_at,
                                      _presented_card(entry)):
            _not_credited(conn, r, why, now)
            return False
        verdict = _judge(conn, cache, r["till_id"], entry, sold_at)
    if verdict.ok:
        credits.confirm(conn, r["till_id"], r["receipt_id"], list(verdict.lots), now,
                        held=quarantine.is_quarantined(conn, r["till_id"]))
        return True
    _mismatch(conn, r, verdict.message, now)
    return False


def _mismatch(conn: Connection, r: Row, why: str, now: datetime) -> None:
    """Credit nothing, give back what the sale spent, quarantine the till, raise the alert."""
    message = f"entry {r['seq']} (receipt {r['receipt_id']}): {why}"
    raise_alert(conn, now, "repricing-mismatch", message, till_id=r["till_id"],
                customer_id=r["customer_id"])
    credits.withhold(conn, r["till_id"], r["seq"], r["receipt_id"], why, now)
    spent = _spent(conn, r["till_id"], r["receipt_id"])
    if spent and r["customer_id"] is not None:
        credits.give_back(conn, r["till_id"], r["seq"], r["receipt_id"], r["customer_id"],
                          spent, why, now)
    quarantine.quarantine(conn, r["till_id"], message, now)
    fraud_watch.note_mismatch(conn, r["till_id"], r["receipt_id"], now)  # rule f


def _not_credited(conn: Connection, r: Row, why: str, now: datetime) -> None:
    """A blocked customer's sale (central.blocks): nothing credited, with an alert of its
    own. The till is not quarantined, since its pricing is not in doubt; what the sale
    spent stays spent, as the goods went with it."""
    raise_alert(conn, now, "blocked-customer-sale",
                f"entry {r['seq']} (receipt {r['receipt_id']}) not credited: {why}",
                till_id=r["till_id"], customer_id=r["customer_id"])
    credits.withhold(conn, r["till_id"], r["seq"], r["receipt_id"], why, now)


def _failed(conn: Connection, r: Row, why: str, now: datetime) -> bool:
    """An entry whose re-pricing raised: a mismatch like any other, if even that can be
    written; else an alert alone, so head office knows which entry was passed over."""
    try:
        with conn.savepoint("mismatch"):
            _mismatch(conn, r, why, now)
    except Unavailable:
        raise
    except Exception:
        log.exception("withholding entry %s of till %s failed", r["seq"], r["till_id"])
        raise_alert(conn, now, "repricing-mismatch",
                    f"entry {r['seq']} (receipt {r['receipt_id']}): {why}; passed over,"
                    " its points neither credited nor withdrawn", severity="critical",
                    till_id=r["till_id"])
    return False


def progress(conn: Connection) -> dict[str, int]:
    row = conn.execute("SELECT ingest_seq, checked, mismatches FROM repricing"
                       " WHERE name = 'journal'").fetchone()
    behind = ingest_log.entries_behind(conn, row["ingest_seq"])
    return {"checked": row["checked"], "mismatches": row["mismatches"], "behind": behind}
