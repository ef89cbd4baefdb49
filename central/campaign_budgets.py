"""Campaign budget caps: the central counts what budgeted campaigns granted, and hands tills
allowances to grant from.

A campaign's `budget` caps its points in total (over the campaign's whole life) and per
customer per period (day, week, month, year, or the whole campaign; calendar periods of
the programme's time zone, see protocol.budget_periods). The central is authoritative: this
module follows the journal after ingest (a cursor over the ingest sequence, like
central.repricing, so ingest stays fast) and adds each sale's `campaign_totals` to the
usage. Tills price offline: the total is lent to them as leases (till_allowances) that
never add up to more than what is left, so they overshoot it only by what an offline till
held when its lease expired and was lent again; per-customer caps may be overshot by what
several tills granted one customer since their last delta.

Returns do not give budget back: a cap bounds what head office may have to pay out, and
points taken back on a return are a debt the ledger may never recover, so usage only
grows. (It also keeps the count one-directional, which is what lets tills subtract their
own unsynced grants without double counting.)

The same pass records the offers sales granted and used (central.offer_grants), in the
same transaction, so a till can rely on one cut-off for both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from central import ingest_log, ledger, offer_grants
from central.clock import iso, parse_iso
from central.db import Connection, transaction
from protocol.budget_periods import period_key
from protocol.wire import InvalidMessage, unpack

CHUNK = 500


@dataclass(frozen=True)
class Budget:
    total: int | None
    per_customer: int | None
    period: str
    zone: tzinfo | None = None  # the programme's: its periods are the customer's calendar


def store_budgets(conn: Connection, version: int, doc: dict[str, Any]) -> None:
    """Record a rule set's budgets at publish, inside its transaction (doc already valid)."""
    conn.executemany(
        "INSERT INTO campaign_budgets (ruleset_version, campaign_id, total, per_customer,"
        " period) VALUES (?, ?, ?, ?, ?)",
        [(version, c["id"], c["budget"].get("total"), c["budget"].get("per_customer"),
          c["budget"].get("period", "campaign"))
         for c in doc.get("campaigns", ()) if c.get("budget")])


def budgets(conn: Connection, version: int | None = None) -> dict[str, Budget]:
    """The budgets of one rule-set version (default: the newest, the one tills get)."""
    if version is None:
        version = conn.execute("SELECT MAX(version) FROM rulesets").fetchone()[0]
    rows = conn.execute(
        "SELECT campaign_id, total, per_customer, period FROM campaign_budgets"
        " WHERE ruleset_version = ?", (version,)).fetchall()
    if not rows:
        return {}  # no budgets: nor any need to look into the document for its zone
    zone = _programme_zone(conn, version)
    return {r[0]: Budget(r[1], r[2], r[3], zone) for r in rows}


def _programme_zone(conn: Connection, version: int | None) -> tzinfo | None:
    # One field of the document, read by the database: the document is never parsed here.
    row = conn.execute(f"SELECT {conn.dialect.json_text('doc', 'programme', 'time_zone')}"
                       " FROM rulesets WHERE version = ?", (version,)).fetchone()
    return ZoneInfo(row[0]) if row and isinstance(row[0], str) and row[0] else None


# -- accounting --------------------------------------------------------------------------


def account_pending(conn: Connection, limit: int = CHUNK) -> int:
    """Add the next `limit` journal entries to the usage; returns how many were looked at."""
    start = conn.execute(
        "SELECT ingest_seq FROM budget_accounting WHERE name = 'journal'").fetchone()[0]
    page = ingest_log.entries_after(
        conn, start, limit, "j.till_id, j.epoch, j.seq, j.kind, j.customer_id, j.body")
    rows = page.rows
    if not rows:
        return 0
    by_version: dict[int, dict[str, Budget]] = {}
    total: dict[str, int] = defaultdict(int)
    by_till: dict[tuple[str, str], int] = defaultdict(int)
    per_customer: dict[tuple[str, str, str], int] = defaultdict(int)
    reached: dict[tuple[str, str], int] = {}
    offers = offer_grants.OfferChanges()
    for r in rows:
        reached[(r["till_id"], r["epoch"])] = max(reached.get((r["till_id"], r["epoch"]), 0),
                                                  r["seq"])
        if r["kind"] != "sale":
            continue  # returns give no budget back (see the module's docstring)
        try:
            entry = unpack(r["body"])
            settled = entry["detail"]["settlement"]
            granted = settled["campaign_totals"]
            version, at = int(entry["ruleset_version"]), parse_iso(entry["at"])
            if r["customer_id"] is not None:
                offers.follow(r["customer_id"], settled)
        except (InvalidMessage, KeyError, TypeError, ValueError):
            # Unreadable or without a settlement: re-pricing raises the alert for it; a
            # sale nobody can read granted nothing this module could count.
            continue
        if version not in by_version:
            by_version[version] = budgets(conn, version)
        # The budget of the version the till priced with: its grants were bounded by it.
        for campaign_id, points in granted.items():
            b = by_version[version].get(campaign_id)
            if b is None or not isinstance(points, int) or points <= 0:
                continue
            total[campaign_id] += points
            by_till[(r["till_id"], campaign_id)] += points
            if b.per_customer is not None and r["customer_id"] is not None:
                key = period_key(b.period, at, b.zone)
                per_customer[(r["customer_id"], campaign_id, key)] += points
    with transaction(conn):
        if not ingest_log.claim(conn, "budget_accounting", "journal", start, page.upto):
            return 0  # another process counted these meanwhile
        ledger.lock_customers(conn, {k[0] for k in per_customer} | offers.customers())
        conn.executemany(
            "INSERT INTO campaign_usage (campaign_id, used) VALUES (?, ?)"
            " ON CONFLICT (campaign_id) DO UPDATE SET used = campaign_usage.used + excluded.used",
            sorted(total.items()))
        conn.executemany(
            "INSERT INTO campaign_till_usage (till_id, campaign_id, used) VALUES (?, ?, ?)"
            " ON CONFLICT (till_id, campaign_id)"
            " DO UPDATE SET used = campaign_till_usage.used + excluded.used",
            [(*k, v) for k, v in sorted(by_till.items())])
        conn.executemany(
            "INSERT INTO campaign_customer_usage (customer_id, campaign_id, period_key, used)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (customer_id, campaign_id, period_key)"
            " DO UPDATE SET used = campaign_customer_usage.used + excluded.used",
            [(*k, v) for k, v in sorted(per_customer.items())])
        conn.executemany(
            "INSERT INTO budget_accounted (till_id, epoch, seq) VALUES (?, ?, ?)"
            " ON CONFLICT (till_id, epoch) DO UPDATE SET seq = "
            + conn.dialect.greatest("budget_accounted.seq", "excluded.seq"),
            [(*k, v) for k, v in sorted(reached.items())])
        offers.apply(conn)
        # Customers whose allowance shrank or whose offers changed go out with the next
        # delta; ingest touched them for the balance already, but possibly before this.
        changed = sorted({k[0] for k in per_customer} | offers.customers())
        ledger.touch_many(conn, sorted(ledger.existing_customers(conn, changed)))
    return len(rows)


def accounted_seq(conn: Connection, till_id: str, epoch: str | None) -> int:
    """How far this till's entries (of `epoch`) are in the usage figures."""
    row = conn.execute("SELECT seq FROM budget_accounted WHERE till_id = ? AND epoch = ?",
                       (till_id, epoch)).fetchone()
    return row[0] if row else 0


def behind(conn: Connection) -> int:
    start = conn.execute(
        "SELECT ingest_seq FROM budget_accounting WHERE name = 'journal'").fetchone()[0]
    return ingest_log.entries_behind(conn, start)


# -- allowances --------------------------------------------------------------------------


# How long a till's allowance holds without a sync: an offline till grants from it until then,
# and after that the points it did not grant go back to the other tills.
LEASE_TTL = timedelta(minutes=15)


def till_allowances(conn: Connection, till_id: str, current: dict[str, Budget],
                    now: datetime) -> dict[str, dict[str, Any]]:
    """Per budgeted campaign: the caps a till needs to price offline; in a writing
    transaction, since it records the till's leases.

    A campaign's total is lent out to the tills as leases: `till_remaining` is what this
    till may still grant, until `lease_expires`, counted from its entries up to the delta's
    `as_of_seq`. The leases of all tills never add up to more than what is left of the
    total, so tills together never overshoot it, online or not. Each sync renews the
    calling till's lease from what no other till holds: an even part of it, or twice what
    this till granted since its last lease if that is more. So a till that sells gets the
    most, an idle till's part halves at each of its syncs (down to nothing), and an offline
    till's part comes back to the others when its lease expires: the whole budget can be
    granted, its last points included.

    `per_customer` with its period and the current period's key lets a till compute a
    fresh allowance for customers it has no figure for, and notice when its figure for a
    customer is from a past period.
    """
    if not current:
        return {}
    # One till's leases at a time across central processes: two syncs reading the same
    # free points before either wrote its lease would lend them twice (on SQLite the
    # transaction's write lock already does this).
    conn.dialect.lock(conn, "campaign-leases")
    tills = max(1, conn.execute(
        "SELECT COUNT(*) FROM tills WHERE status = 'active'").fetchone()[0])
    capped = [cid for cid, b in current.items() if b.total is not None]
    used = _by_campaign(conn, "SELECT campaign_id, used FROM campaign_usage", (), capped)
    mine = _by_campaign(conn, "SELECT campaign_id, used FROM campaign_till_usage"
                        " WHERE till_id = ?", (till_id,), capped)
    # What the other tills hold of their unexpired leases: not yet granted, not free.
    held = _by_campaign(
        conn,
        "SELECT l.campaign_id, SUM(CASE WHEN l.till_limit > COALESCE(u.used, 0)"
        " THEN l.till_limit - COALESCE(u.used, 0) ELSE 0 END) FROM campaign_leases l"
        " LEFT JOIN campaign_till_usage u ON u.till_id = l.till_id"
        " AND u.campaign_id = l.campaign_id"
        " WHERE l.till_id <> ? AND l.expires_at > ? GROUP BY l.campaign_id",
        (till_id, iso(now)), capped)
    previous = {cid: (limit, at_issue) for cid, limit, at_issue in conn.execute(
        "SELECT campaign_id, till_limit, used_at_issue FROM campaign_leases WHERE till_id = ?",
        (till_id,)) if cid in current}
    expires = iso(now + LEASE_TTL)
    out: dict[str, dict[str, Any]] = {}
    leases: list[tuple[str, str, int, int, str]] = []
    for campaign_id, b in sorted(current.items()):
        remaining = None
        if b.total is not None:
            free = max(0, b.total - used.get(campaign_id, 0) - held.get(campaign_id, 0))
            granted = mine.get(campaign_id, 0)
            limit, at_issue = previous.get(campaign_id, (granted, granted))
            recent = granted - at_issue
            # A till that left its lease untouched gets a part rounded down, so it shrinks
            # to nothing; one that sold or held nothing, rounded up: rounded down, the last
            # few points (fewer than there are tills) would never be lent to anyone.
            idle = recent == 0 and limit > granted
            share = free // tills if idle else -(-free // tills)
            remaining = min(free, max(share, 2 * recent))
            leases.append((till_id, campaign_id, granted + remaining, granted, expires))
        out[campaign_id] = {
            "till_remaining": remaining,
            "lease_expires": expires if remaining is not None else None,
            "per_customer": b.per_customer,
            "period": b.period,
            "period_key": period_key(b.period, now, b.zone),
        }
    conn.executemany(
        "INSERT INTO campaign_leases (till_id, campaign_id, till_limit, used_at_issue,"
        " expires_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (till_id, campaign_id) DO UPDATE"
        " SET till_limit = excluded.till_limit, used_at_issue = excluded.used_at_issue,"
        " expires_at = excluded.expires_at", leases)
    return out


def _by_campaign(conn: Connection, sql: str, args: tuple,
                 campaigns: list[str]) -> dict[str, int]:
    """campaign -> figure of a two-column query, for the given campaigns."""
    if not campaigns:
        return {}
    wanted = set(campaigns)
    return {cid: v for cid, v in conn.execute(sql, args) if cid in wanted}


def customer_allowances(conn: Connection, customer_id: str,
                        current: dict[str, Budget], now: datetime) -> dict[str, int]:
    """What the customer may still get of each per-customer budget in its current period.

    Only campaigns the customer used in the current period are listed: for the others the
    remaining allowance is the whole per-customer cap, which the till has from
    till_allowances, so a delta does not repeat 10,000 campaigns per customer.
    """
    out: dict[str, int] = {}
    for campaign_id, key, used in conn.execute(
            "SELECT campaign_id, period_key, used FROM campaign_customer_usage"
            " WHERE customer_id = ?", (customer_id,)):
        b = current.get(campaign_id)
        if b is None or b.per_customer is None or key != period_key(b.period, now, b.zone):
            continue
        out[campaign_id] = max(0, b.per_customer - used)
    return out


def customers_allowances(conn: Connection, customer_ids: list[str],
                         current: dict[str, Budget], now: datetime) -> dict[str, dict[str, int]]:
    """customer_allowances() for a page of customers, in one query per 500 (none at all
    when no campaign has a per-customer budget)."""
    out: dict[str, dict[str, int]] = {c: {} for c in customer_ids}
    capped = {cid: b for cid, b in current.items() if b.per_customer is not None}
    if not capped:
        return out
    keys = {cid: period_key(b.period, now, b.zone) for cid, b in capped.items()}
    for start in range(0, len(customer_ids), 500):
        chunk = customer_ids[start:start + 500]
        for customer_id, campaign_id, key, used in conn.execute(
                "SELECT customer_id, campaign_id, period_key, used FROM campaign_customer_usage"
                f" WHERE customer_id IN ({','.join('?' * len(chunk))})", chunk):
            b = capped.get(campaign_id)
            if b is not None and key == keys[campaign_id]:
                out[customer_id][campaign_id] = max(0, b.per_customer - used)  # type: ignore[operator]
    return out
