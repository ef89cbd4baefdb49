"""The fraud rules (central.fraud_rules), evaluated as receipts arrive.

A follower of the journal (a cursor over the ingest sequence, like central.kpi_counts)
adds each receipt to small tables of its own and asks the rules about what it touched, so
no rule reads the history of receipts:

- fraud_card_visits: each member's sales of the last days, with store and time (rule a);
- fraud_cashier_days, fraud_cashier_redeemers: per store, UTC day and cashier, receipts,
  returns, members' sales with typed card numbers, and the customers redeemed for (rule b);
- rules c and e look at the one customer's own ledger rows (by its index), d at the
  customer's cards; rule f counts in fraud_till_mismatches, written by re-pricing as it
  finds a mismatch (note_mismatch).

Times are the receipts' own (the till's clock, UTC), so a till that syncs late is judged
by when it sold. Holds are applied last, with their customers locked in id order as ingest
locks them, so this follower and ingest never wait on each other in a circle.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from central import fraud_hits, fraud_rules, ingest_log, ledger
from central.channels import is_virtual_till
from central.clock import iso, parse_iso
from central.db import Connection, Unavailable, transaction
from protocol.wire import InvalidMessage, unpack_map_skipping

log = logging.getLogger(__name__)

CHUNK = 1000
# How long a card's visits are kept for rule a: its longest window (a day) and a till that
# was offline for the longest the default caps allow (72 hours).
VISITS_KEPT = timedelta(days=4)


@dataclass
class _Round:
    now: datetime
    rules: dict[str, dict[str, Any]]
    holds: dict[int, str] = field(default_factory=dict)  # hit -> customer to hold for it

    def on(self, rule: str) -> dict[str, Any] | None:
        r = self.rules[rule]
        return r if r["enabled"] else None

    def hit(self, conn: Connection, rule: str, dedup: str, subject: str, message: str,
            evidence: dict[str, Any], *, customer_id: str | None = None,
            till_id: str | None = None) -> None:
        hit = fraud_hits.record(conn, self.now, rule, dedup, subject, message, evidence,
                                customer_id=customer_id, till_id=till_id)
        if hit is not None and customer_id is not None and self.rules[rule].get("hold"):
            self.holds[hit] = customer_id


def watch_pending(conn: Connection, now: datetime, limit: int = CHUNK) -> int:
    """Run the rules over the receipts of the next `limit` journal entries; returns how
    many entries were looked at (0: nothing new)."""
    start = conn.execute(
        "SELECT ingest_seq FROM fraud_accounting WHERE name = 'journal'").fetchone()[0]
    page = ingest_log.entries_after(
        conn, start, limit,
        "j.till_id, j.receipt_id, j.body, r.kind, r.customer_id, r.store, r.redeemed, r.at",
        join="JOIN receipts r ON r.till_id = j.till_id AND r.receipt_id = j.receipt_id")
    if page.upto == start:
        return 0
    with transaction(conn):
        if not ingest_log.claim(conn, "fraud_accounting", "journal", start, page.upto):
            return 0  # another process ran these meanwhile
        rnd = _Round(now, fraud_rules.current(conn))
        cashier_days: set[tuple[str, str, str]] = set()
        customers_seen: set[str] = set()
        for r in page.rows:
            at = parse_iso(r["at"])
            customer = r["customer_id"]
            cashier, presence = _cashier(r["body"])
            if cashier is not None:
                cashier_days.add(_count_cashier(conn, r, cashier, presence, at))
            if customer is None:
                continue
            if r["kind"] == "sale":
                if not is_virtual_till(r["till_id"]):  # an order online is no card shown
                    _card_many_stores(conn, rnd, r, at)
                if r["redeemed"] > 0:
                    _redeem_after_adjustment(conn, rnd, r, at)
                    _spent_after_accrual(conn, rnd, r, at)
            customers_seen.add(customer)
        for customer in sorted(customers_seen):
            _cards_per_phone(conn, rnd, customer)
        by_store_day: dict[tuple[str, str], set[str]] = defaultdict(set)
        for store, day, cashier in cashier_days:
            by_store_day[(store, day)].add(cashier)
        for (store, day), cashiers in sorted(by_store_day.items()):
            _cashier_unusual(conn, rnd, store, day, cashiers)
        _apply_holds(conn, rnd)
    return max(1, len(page.rows))


def _cashier(body: bytes) -> tuple[str | None, Any]:
    """The entry's cashier and its presence proof (None: nobody proved to be there)."""
    try:
        entry = unpack_map_skipping(body, "detail")
    except InvalidMessage:
        return None, None  # re-pricing reports an entry that does not decode
    cashier = entry.get("cashier")
    return (cashier if isinstance(cashier, str) else None), entry.get("presence")


def _apply_holds(conn: Connection, rnd: _Round) -> None:
    if not rnd.holds:
        return
    ledger.lock_customers(conn, set(rnd.holds.values()))
    for hit, customer in sorted(rnd.holds.items()):
        fraud_hits.hold(conn, hit, customer, rnd.now)


# -- (a) one card in several stores within minutes ---------------------------------------

def _card_many_stores(conn: Connection, rnd: _Round, r, at: datetime) -> None:
    customer = r["customer_id"]
    # Each visit, not only a store's latest: a till that syncs late brings visits older
    # than ones already counted. Kept for VISITS_KEPT, far beyond the longest window.
    conn.execute("DELETE FROM fraud_card_visits WHERE customer_id = ? AND at < ?",
                 (customer, iso(at - VISITS_KEPT)))
    conn.execute("INSERT INTO fraud_card_visits (customer_id, at, store, receipt_id)"
                 " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                 (customer, iso(at), r["store"], r["receipt_id"]))
    rule = rnd.on("card-many-stores")
    if rule is None:
        return
    span = timedelta(minutes=rule["minutes"])
    rows = conn.execute(
        "SELECT store, at, receipt_id FROM fraud_card_visits WHERE customer_id = ?"
        " AND at >= ? AND at <= ? AND store != ?",
        (customer, iso(at - span), iso(at + span), r["store"])).fetchall()
    visits = [Visit(parse_iso(v["at"]), v["store"], v["receipt_id"]) for v in rows]
    group = busiest_window([*visits, Visit(at, r["store"], r["receipt_id"])], at, span)
    if len(group) < rule["stores"]:
        return
    evidence = {"stores": len(group), "minutes": rule["minutes"],
                "receipts": [{"store": v.store, "at": iso(v.at), "receipt_id": v.receipt_id}
                             for v in group]}
    rnd.hit(conn, "card-many-stores", f"{customer}|{group[0].receipt_id}",
            f"customer {customer}",
            f"one card in {len(group)} stores within {rule['minutes']} minutes"
            f" ({', '.join(v.store for v in group)})", evidence, customer_id=customer,
            till_id=r["till_id"])


@dataclass(frozen=True)
class Visit:
    at: datetime
    store: str
    receipt_id: str


def busiest_window(visits: list[Visit], at: datetime, span: timedelta) -> list[Visit]:
    """The visits of the most stores (one visit a store) that lie within `span` of each
    other together with the visit at `at`, in time order; ties go to the earliest."""
    best: list[Visit] = []
    for start in sorted({v.at for v in visits if at - span <= v.at <= at}):
        inside: dict[str, Visit] = {}
        for v in sorted(visits, key=lambda v: (v.at, v.store)):
            if start <= v.at <= start + span:
                inside.setdefault(v.store, v)
        if len(inside) > len(best):
            best = sorted(inside.values(), key=lambda v: (v.at, v.store))
    return best


# -- (b) a cashier far above the store's median cashier ----------------------------------

def _count_cashier(conn: Connection, r, cashier: str, presence: Any,
                   at: datetime) -> tuple[str, str, str]:
    day = at.date().isoformat()
    # A member's sale carries the proof of presence the till held (the card read at the
    # reader, an app or SMS code; agent.presence), spending or not: without one, the
    # cashier typed the card number or the customer's id.
    typed = r["kind"] == "sale" and r["customer_id"] is not None and presence is None
    conn.execute(
        "INSERT INTO fraud_cashier_days (store, day, cashier, receipts, returns, typed)"
        " VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (store, day, cashier) DO UPDATE SET"
        " receipts = fraud_cashier_days.receipts + 1,"
        " returns = fraud_cashier_days.returns + excluded.returns,"
        " typed = fraud_cashier_days.typed + excluded.typed",
        (r["store"], day, cashier, int(r["kind"] == "return"), int(typed)))
    if r["kind"] == "sale" and r["redeemed"] > 0 and r["customer_id"] is not None:
        conn.execute("INSERT INTO fraud_cashier_redeemers (store, day, cashier, customer_id)"
                     " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     (r["store"], day, cashier, r["customer_id"]))
    return r["store"], day, cashier


def over_baseline(value: int, others: list[int], min_count: int, factor_percent: int) -> bool:
    """Whether `value` is at least `min_count` and more than `factor_percent` % of the
    median of `others` (every cashier of the store, this one included), in integers."""
    if value < min_count:
        return False
    ranked = sorted(others)
    n = len(ranked)
    twice_median = 2 * ranked[n // 2] if n % 2 else ranked[n // 2 - 1] + ranked[n // 2]
    return value * 200 > factor_percent * twice_median


def _cashier_unusual(conn: Connection, rnd: _Round, store: str, day: str,
                     cashiers: set[str]) -> None:
    """The cashiers of `store` whose receipts of `day` just arrived, each against the
    store's median cashier over the rule's days to `day`."""
    rule = rnd.on("cashier-unusual")
    if rule is None:
        return
    since = (datetime.fromisoformat(day) - timedelta(days=rule["days"] - 1)).date().isoformat()
    returns, typed = {}, {}
    for r in conn.execute(
            "SELECT cashier, SUM(returns) AS returns, SUM(typed) AS typed"
            " FROM fraud_cashier_days WHERE store = ? AND day >= ? AND day <= ?"
            " GROUP BY cashier", (store, since, day)):
        returns[r["cashier"]], typed[r["cashier"]] = int(r["returns"]), int(r["typed"])
    redeemed = {r["cashier"]: int(r["n"]) for r in conn.execute(
        "SELECT cashier, COUNT(*) AS n FROM fraud_cashier_redeemers WHERE store = ?"
        " AND day >= ? AND day <= ? GROUP BY cashier", (store, since, day))}
    for measure, counts in (("returns", returns), ("typed_cards", typed),
                            ("redeemed_customers", redeemed)):
        everyone = sorted(counts.get(c, 0) for c in returns)  # every cashier with a receipt
        for cashier in sorted(cashiers):
            value = counts.get(cashier, 0)
            if not over_baseline(value, everyone, rule["min_count"], rule["factor_percent"]):
                continue
            evidence = {"store": store, "cashier": cashier, "measure": measure,
                        "value": value, "cashiers": len(everyone), "store_counts": everyone,
                        "from": since, "to": day, "min_count": rule["min_count"],
                        "factor_percent": rule["factor_percent"]}
            rnd.hit(conn, "cashier-unusual", f"{store}|{cashier}|{measure}|{day}",
                    f"cashier {cashier} in store {store}",
                    f"cashier {cashier} in store {store}: {measure} {value} in {rule['days']}"
                    f" days to {day}, over {rule['factor_percent']} % of the store's median"
                    f" cashier (counts {everyone})", evidence)


# -- (c) a redemption right after a manual adjustment ------------------------------------

def _redeem_after_adjustment(conn: Connection, rnd: _Round, r, at: datetime) -> None:
    rule = rnd.on("redeem-after-adjustment")
    if rule is None:
        return
    customer = r["customer_id"]
    adj = conn.execute(
        "SELECT id, at, points, actor FROM ledger WHERE customer_id = ? AND kind = 'adjust'"
        " AND points >= ? AND at >= ? AND at <= ? AND actor IS NOT NULL AND actor != 'central'"
        " ORDER BY id DESC LIMIT 1",
        (customer, rule["min_points"], iso(at - timedelta(minutes=rule["minutes"])),
         iso(at))).fetchone()
    if adj is None:
        return
    evidence = {"adjustment": {"ledger_id": adj["id"], "at": adj["at"],
                               "points": adj["points"], "actor": adj["actor"]},
                "redemption": {"till_id": r["till_id"], "receipt_id": r["receipt_id"],
                               "at": r["at"], "points": r["redeemed"]},
                "minutes": rule["minutes"]}
    rnd.hit(conn, "redeem-after-adjustment", f"{customer}|{adj['id']}",
            f"customer {customer}",
            f"{r['redeemed']} points redeemed at {r['at']}, within {rule['minutes']} minutes"
            f" of a manual adjustment of {adj['points']} by {adj['actor']}", evidence,
            customer_id=customer, till_id=r["till_id"])


# -- (d) many cards on one phone ---------------------------------------------------------

def _cards_per_phone(conn: Connection, rnd: _Round, customer: str) -> None:
    rule = rnd.on("cards-per-phone")
    if rule is None:
        return
    cards = [c["last4"] for c in conn.execute(
        "SELECT last4 FROM cards WHERE customer_id = ? AND retired_at IS NULL"
        " ORDER BY created_at", (customer,))]
    if len(cards) <= rule["max_cards"]:
        return
    evidence = {"cards": len(cards), "max_cards": rule["max_cards"],
                "last4": ["****" + c for c in cards]}
    rnd.hit(conn, "cards-per-phone", f"{customer}|{len(cards)}", f"customer {customer}",
            f"{len(cards)} cards on one phone's account (more than {rule['max_cards']})",
            evidence, customer_id=customer)


# -- (e) points spent at once after a large accrual --------------------------------------

def _spent_after_accrual(conn: Connection, rnd: _Round, r, at: datetime) -> None:
    rule = rnd.on("spent-after-accrual")
    if rule is None:
        return
    customer = r["customer_id"]
    big = conn.execute(
        "SELECT id, kind, at, points FROM ledger WHERE customer_id = ?"
        " AND kind IN ('earn', 'bonus', 'adjust') AND points >= ? AND at >= ? AND at <= ?"
        " ORDER BY points DESC, id DESC LIMIT 1",
        (customer, rule["min_accrual"], iso(at - timedelta(minutes=rule["minutes"])),
         iso(at))).fetchone()
    if big is None or r["redeemed"] * 100 < rule["spent_percent"] * big["points"]:
        return
    evidence = {"accrual": {"ledger_id": big["id"], "kind": big["kind"], "at": big["at"],
                            "points": big["points"]},
                "redemption": {"till_id": r["till_id"], "receipt_id": r["receipt_id"],
                               "at": r["at"], "points": r["redeemed"]},
                "minutes": rule["minutes"], "spent_percent": rule["spent_percent"]}
    rnd.hit(conn, "spent-after-accrual", f"{customer}|{big['id']}", f"customer {customer}",
            f"{r['redeemed']} of {big['points']} points ({big['kind']} at {big['at']}) spent"
            f" within {rule['minutes']} minutes", evidence, customer_id=customer,
            till_id=r["till_id"])


# -- (f) re-pricing mismatches of one till -----------------------------------------------

def note_mismatch(conn: Connection, till_id: str, receipt_id: str, now: datetime) -> None:
    """Re-pricing found that a till's sale does not re-price as journalled (inside its
    transaction): count it, and hit when the till has had `count` within `hours`.

    In a savepoint of its own: whatever goes wrong here must not undo what re-pricing does
    about the mismatch (withholding the points, quarantining the till)."""
    try:
        with conn.savepoint("fraud"):
            _note_mismatch(conn, till_id, receipt_id, now)
    except Unavailable:
        raise
    except Exception:
        log.exception("fraud rule till-mismatches failed for till %s", till_id)


def _note_mismatch(conn: Connection, till_id: str, receipt_id: str, now: datetime) -> None:
    conn.execute("INSERT INTO fraud_till_mismatches (till_id, at, receipt_id)"
                 " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (till_id, iso(now), receipt_id))
    rnd = _Round(now, fraud_rules.current(conn))
    rule = rnd.on("till-mismatches")
    if rule is None:
        return
    since = iso(now - timedelta(hours=rule["hours"]))
    rows = conn.execute("SELECT at, receipt_id FROM fraud_till_mismatches WHERE till_id = ?"
                        " AND at > ? ORDER BY at, receipt_id", (till_id, since)).fetchall()
    if len(rows) < rule["count"]:
        return
    evidence = {"mismatches": len(rows), "hours": rule["hours"],
                "receipts": [{"at": m["at"], "receipt_id": m["receipt_id"]} for m in rows]}
    rnd.hit(conn, "till-mismatches", f"{till_id}|{rows[0]['receipt_id']}", f"till {till_id}",
            f"till {till_id}: {len(rows)} sales that do not re-price as journalled within"
            f" {rule['hours']} hours", evidence, till_id=till_id)

