"""What puts messages in the outbox (central.messages): followers and schedules.

- receipts: a follower of the journal through the ingest sequence (central.ingest_log),
  like re-pricing and the KPI figures: each member's return, with what it did to the
  points (taken back for the goods, given back of the points paid); and the message lines
  a till printed on a customer's receipt (`messages_printed` in the entry's detail), so
  that no other till prints them again.
- customers: a follower of the customers' change marks (`change_seq`, taken at commit, so
  they become visible in order, as for tills' deltas): a welcome for a customer created
  lately who can be reached, a tier change against the tier last seen, and a cross-offer a
  purchase earned (advertising) while it can still be used. A customer whose personal data
  was erased is forgotten here: the e-mail and push token go, and what waited is skipped.
- activations: the ledger's `activate` entries, a few minutes behind the clock (the
  maturing job writes them within a minute), grouped per customer and day.
- expiring: lots that expire on a day N days ahead (the programme's calendar day), one
  message per customer and day, each day once.
- days: birthdays and members idle for N days (advertising: sent only with consent).

Each moves its cursor (message_cursors) first thing in the transaction that queues its
messages, so however many processes run it, each reason is looked at once; and the keys
are unique, so a reason found twice is still one message.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from central import ingest_log, messages, offer_grants, rulesets
from central.clock import iso, parse_iso
from central.db import Connection, Row, transaction
from central.message_templates import purpose
from central.messages import Draft
from central.repricing import RuleSets
from protocol.rules.place import programme_zone
from protocol.wire import InvalidMessage, unpack

CHUNK = 500
# A customer created longer ago than this and reachable only now gets no welcome.
WELCOME_WITHIN = timedelta(days=30)
# Activations are read this far behind the clock: the maturing job writes them within a
# minute of their time, and a follower that passed a time must not see more of it later.
ACTIVATION_SETTLE = timedelta(minutes=10)


def _draft(kind: str, customer_id: str, about: str, params: dict | None = None,
           store: str | None = None) -> Draft:
    return Draft(f"{kind}:{customer_id}:{about}", kind, customer_id, purpose(kind),
                 params or {}, store)


def follow_receipts(conn: Connection, now: datetime, limit: int = 2000) -> int:
    """Queue a message for each member's return in the next journal entries, and record
    the message lines tills printed on receipts; returns how many entries were looked at
    (0: nothing new)."""
    start = messages.cursor(conn, "returns")
    page = ingest_log.entries_after(
        conn, int(start), limit,
        "r.kind, r.customer_id, r.receipt_id, r.store, r.clawback, r.refund, j.till_id,"
        " j.epoch, j.seq, r.at",
        join="JOIN receipts r ON r.till_id = j.till_id AND r.receipt_id = j.receipt_id")
    if str(page.upto) == start:
        return 0
    with transaction(conn):
        if not messages.move_cursor(conn, "returns", start, str(page.upto)):
            return 0  # another process queued these
        waiting = messages.waiting_for_receipts(
            conn, {r["customer_id"] for r in page.rows if r["customer_id"]})
        for r in page.rows:
            if r["customer_id"] in waiting:
                _printed_lines(conn, r)
            if r["kind"] != "return" or not r["customer_id"]:
                continue
            messages.enqueue(conn, _draft(
                "return", r["customer_id"], r["receipt_id"],
                {"receipt": r["receipt_id"], "clawback": r["clawback"],
                 "refund": r["refund"], "store": r["store"]}, r["store"]), now)
    return max(1, len(page.rows))


def _printed_lines(conn: Connection, r: Row) -> None:
    # Bodies only of the receipts of customers with a line waiting: most have none.
    body = conn.execute("SELECT body FROM journal WHERE till_id = ? AND epoch = ? AND seq = ?",
                        (r["till_id"], r["epoch"], r["seq"])).fetchone()[0]
    try:
        detail = unpack(bytes(body)).get("detail") or {}
        keys = [str(k) for k in detail.get("messages_printed") or ()][:10]
    except (InvalidMessage, AttributeError, TypeError):
        return  # re-pricing reports a body it cannot read
    if keys:
        messages.printed(conn, r["customer_id"], keys, r["till_id"], r["receipt_id"],
                         r["at"])


def follow_customers(conn: Connection, now: datetime, limit: int = CHUNK) -> int:
    """Welcome, tier-change and cross-offer messages for the customers changed since the
    cursor."""
    start = messages.cursor(conn, "customers")
    rows = conn.execute(
        "SELECT c.id, c.tier, c.phone, c.created_at, c.change_seq, c.granted_offers,"
        " c.erased_at, m.email, m.push_token FROM customers c"
        " LEFT JOIN message_contacts m ON m.customer_id = c.id"
        " WHERE c.change_seq > ? ORDER BY c.change_seq LIMIT ?",
        (int(start), limit)).fetchall()
    if not rows:
        return 0
    with transaction(conn):
        if not messages.move_cursor(conn, "customers", start, str(rows[-1]["change_seq"])):
            return 0
        known = messages.seen(conn, [r["id"] for r in rows])
        for r in rows:
            _customer_changed(conn, r, known.get(r["id"]), now)
    return len(rows)


def _customer_changed(conn: Connection, r: Row, before: messages.Seen | None,
                      now: datetime) -> None:
    cid = r["id"]
    if r["erased_at"] is not None:
        messages.forget(conn, cid)
        return
    reachable = r["phone"] or r["email"] or r["push_token"]
    if reachable and parse_iso(r["created_at"]) >= now - WELCOME_WITHIN:
        messages.enqueue(conn, _draft("welcome", cid, "joined"), now)
    if before is not None and before.tier != r["tier"] and r["tier"] is not None:
        messages.enqueue(conn, _draft("tier", cid, str(r["change_seq"]),
                                      {"old_tier": before.tier or "", "tier": r["tier"]}),
                         now)
    # A cross-offer a purchase earned, told once while it can still be used.
    granted = json.loads(r["granted_offers"] or "{}")
    live = offer_grants.live(r["granted_offers"] or "{}", now)
    told = before.offers if before is not None else frozenset()
    for offer in sorted(live - told):
        until = granted[offer]["expires"]
        messages.enqueue(conn, _draft("crossoffer", cid, f"{offer}:{until[:10]}",
                                      {"offer": offer, "until": until[:10]}), now)
    after = messages.Seen(r["tier"], frozenset(told & set(granted)) | live)
    if after != before:
        messages.remember(conn, cid, after)


def follow_activations(conn: Connection, now: datetime) -> int:
    """Points that became spendable, per customer and day, up to ACTIVATION_SETTLE ago."""
    start = messages.cursor(conn, "activations")
    upto = iso(now - ACTIVATION_SETTLE)
    if start >= upto:
        return 0
    with transaction(conn):
        if not messages.move_cursor(conn, "activations", start, upto):
            return 0
        if not start:
            return 1  # first run: from now on, not about the past
        sums: dict[tuple[str, str], int] = defaultdict(int)
        for r in conn.execute(
                "SELECT customer_id, points, at FROM ledger WHERE kind = 'activate'"
                " AND at > ? AND at <= ?", (start, upto)):
            sums[(r["customer_id"], r["at"][:10])] += r["points"]
        for (customer, day), points in sorted(sums.items()):
            if points > 0:
                messages.enqueue(conn, _draft("activated", customer, day,
                                              {"points": points, "day": day}), now)
    return 1


def follow_expiring(conn: Connection, now: datetime, cache: RuleSets | None = None) -> int:
    """Lots expiring on the day `expiring_days` ahead (and any day between it and the last
    one looked at), one message per customer and day."""
    zone = _programme_zone(conn, cache)
    days_ahead = messages.settings(conn).expiring_days
    target = (now.astimezone(zone) + timedelta(days=days_ahead)).date()
    start = messages.cursor(conn, "expiring")
    first = date.fromisoformat(start) + timedelta(days=1) if start else target
    if first > target:
        return 0
    with transaction(conn):
        if not messages.move_cursor(conn, "expiring", start, target.isoformat()):
            return 0
        day = first
        while day <= target:
            lo, hi = (iso(datetime.combine(d, time(0), tzinfo=zone))
                      for d in (day, day + timedelta(days=1)))
            sums: dict[str, int] = defaultdict(int)
            for r in conn.execute(
                    "SELECT customer_id, remaining FROM lots WHERE status = 'active'"
                    " AND expires_at >= ? AND expires_at < ? AND remaining > 0", (lo, hi)):
                sums[r["customer_id"]] += r["remaining"]
            left = (day - now.astimezone(zone).date()).days
            for customer, points in sorted(sums.items()):
                messages.enqueue(conn, _draft("expiring", customer, day.isoformat(), {
                    "points": points, "day": day.isoformat(), "days": left}), now)
            day += timedelta(days=1)
    return 1


def follow_days(conn: Connection, now: datetime, cache: RuleSets | None = None) -> int:
    """Once a day (the programme's): birthday greetings, and win-back for members whose
    last purchase was `idle_days` ago. Both are advertising: the sender sends them only
    with consent."""
    zone = _programme_zone(conn, cache)
    today = now.astimezone(zone).date()
    start = messages.cursor(conn, "days")
    if start >= today.isoformat():
        return 0
    idle = messages.settings(conn).idle_days
    with transaction(conn):
        if not messages.move_cursor(conn, "days", start, today.isoformat()):
            return 0
        for r in conn.execute(
                "SELECT id FROM customers WHERE erased_at IS NULL AND birthday IS NOT NULL"
                " AND substr(birthday, 6, 5) = ?", (today.isoformat()[5:],)).fetchall():
            messages.enqueue(conn, _draft("birthday", r["id"], str(today.year)), now)
        last = (today - timedelta(days=idle)).isoformat()
        for r in conn.execute("SELECT customer_id FROM kpi_members WHERE last_day = ?",
                              (last,)).fetchall():
            messages.enqueue(conn, _draft("winback", r["customer_id"], last,
                                          {"days": idle}), now)
    return 1


def _programme_zone(conn: Connection, cache: RuleSets | None) -> tzinfo:
    """The zone of the programme's calendar days (tier windows, expiry), else UTC."""
    version = rulesets.current_version(conn)
    ruleset = (cache or RuleSets(conn)).get(version) if version is not None else None
    return (programme_zone(ruleset) if ruleset is not None else None) or UTC
