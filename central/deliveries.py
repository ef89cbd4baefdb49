"""What the central delivered to each till: rule-set versions and views of customers.

A till prices offline from what the central sent it, and journals the view of the customer
it priced with. Re-pricing honours that view only as far as a view recorded here backs it,
and the rule-set version the till names only if it was the newest this till had been given
when it sold: a till with a stolen key cannot price with a tier, a segment, a balance or an
old generous rule set it never received. A till that synced before deliveries were
recorded has, for a day, its views backed by what the central held of the customer instead
(_held_refusal): the same tier, segments and offers, the birthday the central holds.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from central import offer_grants, rulesets, tiers
from central.clock import iso, parse_iso
from central.db import Connection
from protocol import rules

# A till prices with the newest view it received before the sale; which that was, the
# central cannot know exactly (an answer may have been lost on the way), so it accepts one
# of the last few it sent before the sale, not any it ever sent.
VIEWS_CONSIDERED = 5
MAX_VIEWS_READ = 200  # a bound on one check's work, however busy the customer
# Views are kept this long (and the newest few always): a till offline longer than this
# has its sales checked against views it may no longer be shown to have had.
VIEWS_KEPT_FOR = timedelta(days=30)
# The till's clock against the central's, when comparing a sale with a delivery.
CLOCK_TOLERANCE = timedelta(minutes=5)
# How long after deliveries began to be recorded for a till that synced before (migration
# 20) a view with no record may stand in for one sent, as far as what the central held of
# the customer backs it: time for even a till offline across the upgrade to pull again.
LEGACY_GRACE = timedelta(days=1)
VIEW_FIELDS = ("tier", "segments", "birthday", "offers", "granted_offers", "purchases",
               "qualifying_spend", "available", "pending", "blocked", "blocked_cards")


def record_ruleset(conn: Connection, till_id: str, version: int, now: datetime) -> None:
    """Record the first delivery of `version` to the till; a repeat (every pull that gets
    304) reads and writes nothing, so it never waits behind ingest for SQLite's lock."""
    if conn.execute("SELECT 1 FROM till_rulesets WHERE till_id = ? AND version = ?",
                    (till_id, version)).fetchone() is None:
        conn.execute(
            "INSERT INTO till_rulesets (till_id, version, delivered_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (till_id, version, iso(now)),
        )


def record_views(conn: Connection, till_id: str, customers: list[dict[str, Any]],
                 now: datetime) -> None:
    """Keep the views a customer delta carried to this till (the last VIEWS_KEPT each)."""
    if not customers:
        return
    at = iso(now)
    conn.executemany(
        "INSERT INTO till_views (till_id, customer_id, delivered_at, view) VALUES (?, ?, ?, ?)",
        [(till_id, c["id"], at, json.dumps({k: c.get(k) for k in VIEW_FIELDS}))
         for c in customers],
    )
    # One statement for the page, not one per customer: a till's first sync carries every
    # member, and a subquery per customer cost more than building the page.
    ids = [c["id"] for c in customers]
    marks = ", ".join("?" * len(ids))
    conn.execute(
        "DELETE FROM till_views WHERE id IN (SELECT id FROM ("
        "  SELECT id, delivered_at, ROW_NUMBER() OVER"
        "   (PARTITION BY customer_id ORDER BY id DESC) AS newer"
        f"  FROM till_views WHERE till_id = ? AND customer_id IN ({marks})) AS kept"
        " WHERE newer > ? AND delivered_at < ?)",
        (till_id, *ids, VIEWS_CONSIDERED, iso(now - VIEWS_KEPT_FOR)),
    )


def ruleset_refusal(conn: Connection, till_id: str, version: int,
                    sold_at: datetime) -> str | None:
    """Why the till may not have priced with `version` at `sold_at`, or None if it may.

    A till holds a version from its delivery but prices with it only from its activation
    time: so a version is due from the later of the two, and an older one stays right
    until a newer one is due."""
    row = conn.execute(
        "SELECT t.delivered_at, r.activates_at FROM till_rulesets t"
        " JOIN rulesets r ON r.version = t.version WHERE t.till_id = ? AND t.version = ?",
        (till_id, version),
    ).fetchone()
    if row is None:
        return f"rule set version {version}, which the central never sent to this till"
    if sold_at + CLOCK_TOLERANCE < parse_iso(row[1]) and conn.execute(
            # A till with nothing older sells with what it has (agent.rules_cache).
            "SELECT 1 FROM till_rulesets WHERE till_id = ? AND version < ?",
            (till_id, version)).fetchone():
        return f"rule set version {version} before it took effect at {row[1]}"
    newer = conn.execute(
        "SELECT MIN(CASE WHEN r.activates_at > t.delivered_at THEN r.activates_at"
        " ELSE t.delivered_at END) FROM till_rulesets t"
        " JOIN rulesets r ON r.version = t.version WHERE t.till_id = ? AND t.version > ?",
        (till_id, version),
    ).fetchone()[0]
    if newer is not None and parse_iso(newer) + CLOCK_TOLERANCE < sold_at:
        return (f"rule set version {version} although a newer one was in effect at the till"
                f" from {newer}")
    return None


def view_refusal(conn: Connection, till_id: str, customer: rules.Customer,
                 sold_at: datetime, refunded: int = 0) -> str | None:
    """What of the till's view of the customer, for a sale at `sold_at`, none of the last
    views sent to this till before the sale backs; None if one does.

    `refunded`: points this till gave back on returns, which its view may add to a balance.
    """
    # Within the clock tolerance of the sale, any view may be the one the till had; before
    # that, the last few.
    near = iso(sold_at - CLOCK_TOLERANCE)
    views: list[dict[str, Any]] = []
    earlier = 0
    for r in conn.execute(
        "SELECT view, delivered_at FROM till_views WHERE till_id = ? AND customer_id = ?"
        " AND delivered_at <= ? ORDER BY id DESC LIMIT ?",
        (till_id, customer.id, iso(sold_at + CLOCK_TOLERANCE), MAX_VIEWS_READ),
    ):
        if r["delivered_at"] <= near:
            earlier += 1
            if earlier > VIEWS_CONSIDERED:
                break
        views.append(json.loads(r["view"]))
    if not views:
        if _before_records_grace(conn, till_id, sold_at):
            return _held_refusal(conn, customer, sold_at)
        return "a view of the customer the central never sent to this till"
    reasons = [_unbacked(customer, v, refunded) for v in views]
    return None if None in reasons else reasons[0]


def _held_refusal(conn: Connection, customer: rules.Customer,
                  sold_at: datetime) -> str | None:
    """For a till in its legacy grace with no view recorded: what of its view (tier,
    segments, offers) nothing the central held of the customer backs. What it held is the
    customer as it stands, and the views it sent any till up to the sale (the last few):
    a till cannot claim a tier, a segment or an offer the customer never had.

    Balance, purchases and spend are not judged here: they move with every sale anywhere,
    the central keeps no history of them to hold a view from before the upgrade against,
    and re-pricing credits no more than the rules give for what the till claimed of them
    (as before the upgrade)."""
    held = _held_now(conn, customer.id, sold_at)
    if held is None:
        return "a view of a customer the central does not hold"
    candidates = [held] + [json.loads(r["view"]) for r in conn.execute(
        "SELECT view FROM till_views WHERE customer_id = ? AND delivered_at <= ?"
        " ORDER BY id DESC LIMIT ?",
        (customer.id, iso(sold_at + CLOCK_TOLERANCE), VIEWS_CONSIDERED))]
    reasons = [_unbacked_profile(customer, v) for v in candidates]
    return None if None in reasons else reasons[0]


def _held_now(conn: Connection, customer_id: str | None,
              sold_at: datetime) -> dict[str, Any] | None:
    """The customer's tier, segments and offers as the central holds them (the fields of
    a view that _unbacked_profile reads), the tier as of the sale."""
    row = conn.execute(
        "SELECT tier, segments, offers, granted_offers, window_start, window_spend"
        " FROM customers WHERE id = ?", (customer_id,)).fetchone()
    if row is None:
        return None
    tier, _ = tiers.effective(rulesets.current_tiers(conn), row["tier"], row["window_start"],
                              row["window_spend"], sold_at)
    return {"tier": tier, "segments": json.loads(row["segments"]),
            "offers": json.loads(row["offers"]),
            "granted_offers": sorted(offer_grants.ever_granted(row["granted_offers"]))}


def _before_records_grace(conn: Connection, till_id: str, sold_at: datetime) -> bool:
    """A till that synced before views were recorded holds views of customers the central
    has no record of sending. Migration 20 marked every customer changed, so such a till
    receives (and the central records) a view of each at its next pulls; until then, and for
    LEGACY_GRACE at most, its view of a customer with none recorded stands in for one sent,
    as far as what the central held of the customer backs it (_held_refusal). The grace is
    bounded in time so a stolen key cannot keep a till on it by never pulling."""
    row = conn.execute("SELECT deliveries_recorded_from FROM tills WHERE id = ?",
                       (till_id,)).fetchone()
    return (row is not None and row[0] is not None
            and sold_at <= parse_iso(row[0]) + LEGACY_GRACE)


def sent_birthday(conn: Connection, till_id: str, customer_id: str,
                  sold_at: datetime) -> date | None:
    """The birthday (month and day) in the newest view of the customer sent to this till
    before the sale: what the till priced with."""
    row = conn.execute(
        "SELECT view FROM till_views WHERE till_id = ? AND customer_id = ? AND delivered_at <= ?"
        " ORDER BY id DESC LIMIT 1",
        (till_id, customer_id, iso(sold_at + CLOCK_TOLERANCE))).fetchone()
    if row is None:
        if _before_records_grace(conn, till_id, sold_at):
            # The view taken as sent (view_refusal): the birthday the central holds.
            held = conn.execute("SELECT birthday FROM customers WHERE id = ?",
                                (customer_id,)).fetchone()
            return (rules.birthday_from_wire(rules.month_day(date.fromisoformat(held[0])))
                    if held and held[0] else None)
        return None
    try:
        return rules.birthday_from_wire(json.loads(row["view"]).get("birthday"))
    except rules.InputError:
        return None


def _unbacked_profile(c: rules.Customer, v: dict[str, Any]) -> str | None:
    """What of the customer's tier, segments and offers the view `v` does not back."""
    if c.tier != v.get("tier"):
        return f"tier {c.tier!r}"
    if extra := c.segments - set(v.get("segments") or ()):
        return f"segments {sorted(extra)}"
    offers = set(v.get("offers") or ()) | set(v.get("granted_offers") or ())
    if extra := c.activated_offers - offers:
        return f"offers {sorted(extra)}"
    return None


def _unbacked(c: rules.Customer, v: dict[str, Any], refunded: int) -> str | None:
    if why := _unbacked_profile(c, v):
        return why
    # The birthday is not in the till's journal (152-FZ): re-pricing takes the one the
    # central sent (sent_birthday), so a till cannot claim a birthday window.
    if c.purchase_count < (v.get("purchases") or 0):
        return f"{c.purchase_count} purchases"
    if c.qualifying_spend != (v.get("qualifying_spend") or 0):
        return f"a qualifying spend of {c.qualifying_spend}"
    # A till reckons pending lots available from their own dates (protocol.balances), so
    # what it was sent as pending may have become spendable by the sale: the bound is all
    # the points the view held.
    if c.balance > max(0, v.get("available") or 0) + max(0, v.get("pending") or 0) + refunded:
        return f"a balance of {c.balance}"
    return None
