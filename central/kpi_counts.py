"""The figures KPIs are read from, kept up as receipts arrive.

A follower of the journal (a cursor over the ingest sequence, like central.campaign_budgets)
adds each receipt to per-day sums, so a KPI query reads days, never receipts:

- kpi_days: by store-local day, store, member or not, and the member's tier — receipts and
  revenue of sales and of returns, and the points they earned, redeemed, clawed back and
  refunded. A return counts on the day of the return, not of the sale it undoes.
- kpi_segment_days: the same for members, by each segment the member was in.
- kpi_member_days: which member bought in which store on which day (active members,
  frequency, churn, cohort retention count people, and people are only known by member).
- kpi_members: each member's first and last purchase day and lifetime revenue (cohorts, LTV).

The day is the store's own calendar day (its zone in the rule set the receipt was priced
with, else the programme's, else UTC), as the store's staff and reports count days. The tier
and segments are the member's when the receipt is counted, seconds after it arrived: close to
the sale's, and what the central knows then.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from central import ingest_log, ledger
from central.clock import iso, parse_iso
from central.db import Connection, transaction
from central.repricing import RuleSets
from protocol.rules.place import place_of

CHUNK = 2000
# Per-day sums: sales, revenue, returns, returned, earned, redeemed, clawback, refund.
FIGURES = ("sales", "revenue", "returns", "returned", "earned", "redeemed", "clawback",
           "refund")


@dataclass
class _Sums:
    days: dict[tuple[str, str, int, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * len(FIGURES)))
    segments: dict[tuple[str, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0] * len(FIGURES)))
    member_days: dict[tuple[str, str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))
    members: dict[str, list] = field(default_factory=dict)  # id -> [first, last, revenue]


def store_zone(rulesets: RuleSets, version: int, store: str) -> tzinfo:
    """The store's zone in the rule set a receipt was priced with (UTC if it names none)."""
    ruleset = rulesets.get(version)
    zone = place_of(ruleset, store).time_zone if ruleset is not None else None
    return zone or UTC


def count_pending(conn: Connection, rulesets: RuleSets | None = None,
                  limit: int = CHUNK) -> int:
    """Add the receipts of the next `limit` journal entries to the KPI figures; returns how
    many entries were looked at (0: nothing new)."""
    rulesets = rulesets or RuleSets(conn)
    start = conn.execute(
        "SELECT ingest_seq FROM kpi_accounting WHERE name = 'journal'").fetchone()[0]
    page = ingest_log.entries_after(
        conn, start, limit,
        "r.kind, r.customer_id, r.store, r.total, r.earned, r.redeemed, r.clawback,"
        " r.refund, r.at, r.ruleset_version",
        join="JOIN receipts r ON r.till_id = j.till_id AND r.receipt_id = j.receipt_id")
    if page.upto == start:
        return 0
    receipts = page.rows
    members = _members(conn, {r["customer_id"] for r in receipts if r["customer_id"]})
    sums = _Sums()
    zones: dict[tuple[int, str], tzinfo] = {}
    for r in receipts:
        where = (r["ruleset_version"], r["store"])
        if where not in zones:
            zones[where] = store_zone(rulesets, *where)
        day = parse_iso(r["at"]).astimezone(zones[where]).date().isoformat()
        sale = r["kind"] == "sale"
        figures = (1, r["total"], 0, 0) if sale else (0, 0, 1, r["total"])
        row = (*figures, r["earned"], r["redeemed"], r["clawback"], r["refund"])
        member = members.get(r["customer_id"]) if r["customer_id"] else None
        tier = (member or {}).get("tier") or ""
        _add(sums.days[(day, r["store"], int(member is not None), tier)], row)
        if member is None:
            continue
        for segment in member["segments"]:
            _add(sums.segments[(day, r["store"], segment)], row)
        if sale:
            _add(sums.member_days[(day, r["store"], r["customer_id"])], (1, r["total"]))
            seen = sums.members.setdefault(r["customer_id"], [day, day, 0])
            # None where only a return was seen yet (it may reach the central first)
            seen[0], seen[1] = min(seen[0] or day, day), max(seen[1] or day, day)
            seen[2] += r["total"]
        else:  # a return takes its money off the member's lifetime revenue
            sums.members.setdefault(r["customer_id"], [None, None, 0])[2] -= r["total"]
    with transaction(conn):
        if not ingest_log.claim(conn, "kpi_accounting", "journal", start, page.upto):
            return 0  # another process counted these meanwhile
        _write(conn, sums)
    return max(1, len(page.rows))  # batches without receipts were looked at too


def _add(into: list[int], values: tuple[int, ...]) -> None:
    for i, v in enumerate(values):
        into[i] += v


def _members(conn: Connection, ids: set[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    listed = sorted(ids)
    for start in range(0, len(listed), 500):
        chunk = listed[start:start + 500]
        for r in conn.execute(
                "SELECT id, tier, segments FROM customers"
                f" WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            out[r["id"]] = {"tier": r["tier"], "segments": json.loads(r["segments"] or "[]")}
    return out


def _write(conn: Connection, sums: _Sums) -> None:
    cols = ", ".join(FIGURES)
    adds = ", ".join(f"{f} = kpi_days.{f} + excluded.{f}" for f in FIGURES)
    marks = ", ".join("?" * len(FIGURES))
    conn.executemany(
        f"INSERT INTO kpi_days (day, store, member, tier, {cols}) VALUES (?, ?, ?, ?, {marks})"
        f" ON CONFLICT (day, store, member, tier) DO UPDATE SET {adds}",
        [(*k, *v) for k, v in sorted(sums.days.items())])
    conn.executemany(
        f"INSERT INTO kpi_segment_days (day, store, segment, {cols})"
        f" VALUES (?, ?, ?, {marks}) ON CONFLICT (day, store, segment) DO UPDATE SET "
        + adds.replace("kpi_days.", "kpi_segment_days."),
        [(*k, *v) for k, v in sorted(sums.segments.items())])
    conn.executemany(
        "INSERT INTO kpi_member_days (day, store, customer_id, sales, revenue)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (day, store, customer_id) DO UPDATE SET"
        " sales = kpi_member_days.sales + excluded.sales,"
        " revenue = kpi_member_days.revenue + excluded.revenue",
        [(*k, *v) for k, v in sorted(sums.member_days.items())])
    least, greatest = conn.dialect.least, conn.dialect.greatest
    conn.executemany(
        "INSERT INTO kpi_members (customer_id, first_day, last_day, revenue)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (customer_id) DO UPDATE SET"
        f" first_day = COALESCE({least('kpi_members.first_day', 'excluded.first_day')},"
        "  kpi_members.first_day, excluded.first_day),"
        f" last_day = COALESCE({greatest('kpi_members.last_day', 'excluded.last_day')},"
        "  kpi_members.last_day, excluded.last_day),"
        " revenue = kpi_members.revenue + excluded.revenue",
        [(k, *v) for k, v in sorted(sums.members.items())])


def snapshot_points(conn: Connection, now: datetime) -> dict[str, int]:
    """Record the points outstanding now, and what expired and was redeemed all along (the
    observed breakage): one pass over the ledger, made by a scheduled job so that no KPI
    query scans it."""
    sums = {r[0]: r[1] for r in conn.execute(
        "SELECT kind, COALESCE(SUM(points), 0) FROM ledger GROUP BY kind")}
    figures = {
        "outstanding": sum(v for k, v in sums.items() if k in ledger.MOVEMENT_KINDS),
        "expired": -sums.get("expire", 0),
        # Redeemed and then given back on a return was not redeemed in the end.
        "redeemed": -sums.get("redeem", 0) - sums.get("refund", 0),
    }
    conn.execute("INSERT INTO kpi_points (at, outstanding, expired, redeemed)"
                 " VALUES (?, ?, ?, ?) ON CONFLICT (at) DO NOTHING",
                 (iso(now), figures["outstanding"], figures["expired"], figures["redeemed"]))
    return figures
