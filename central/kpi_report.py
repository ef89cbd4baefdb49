"""KPIs for a period, read from the per-day figures of central.kpi_counts.

Every figure is returned with its definition and its inputs, so head office can check it.
Shares are in basis points (1/100 of a per cent) and money in kopecks, both integers;
a figure whose denominator is 0 is null. Receipts of non-members are counted as receipts:
people outside the programme are not tracked, so frequency and churn are members' only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from central.db import Connection

BP = 10_000  # basis points in a whole


class KpiError(ValueError):
    """A filter that cannot be answered; the message names the field."""


@dataclass(frozen=True)
class Period:
    start: date  # first day, the store's calendar day
    end: date  # last day, included
    store: str | None = None
    region: str | None = None
    tier: str | None = None
    segment: str | None = None
    active_days: int = 90  # "active": a purchase in this many days up to the period's end

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise KpiError("'to' is before 'from'")
        if (self.end - self.start).days > 3660:
            raise KpiError("'from'..'to' spans more than ten years")
        if not 1 <= self.active_days <= 3660:
            raise KpiError("'active_days' must be from 1 to 3660")
        if self.tier is not None and self.segment is not None:
            raise KpiError("give 'tier' or 'segment', not both")

    def previous(self) -> Period:
        """The period of the same length just before this one (for churn)."""
        length = self.end - self.start + timedelta(days=1)
        return Period(self.start - length, self.start - timedelta(days=1), self.store,
                      self.region, self.tier, self.segment, self.active_days)


def share(part: int, whole: int) -> int | None:
    return part * BP // whole if whole else None


def ratio(part: int, whole: int) -> int | None:
    return part // whole if whole else None


def newest_doc(conn: Connection) -> dict[str, Any]:
    """The newest rule set's document: where stores, regions and the point's worth are.
    Read once per report (at 10,000 campaigns it is megabytes)."""
    row = conn.execute("SELECT doc FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    return json.loads(row["doc"]) if row else {}


def stores_in(doc: dict[str, Any], p: Period) -> list[str] | None:
    """The stores the period is about: one, a region's (from the newest rule set), or all
    (None)."""
    if p.store is not None:
        return [p.store]
    if p.region is None:
        return None
    stores = doc.get("stores") or {}
    found = sorted(sid for sid, s in stores.items() if (s or {}).get("region") == p.region)
    if not found:
        raise KpiError(f"'region': no store of the rule set is in region {p.region!r}")
    return found


def _where(p: Period, stores: list[str] | None, table: str = "",
           start: date | None = None) -> tuple[str, list[Any]]:
    """The period's days (from `start` if given) and stores, on the columns of `table`."""
    col = f"{table}." if table else ""
    sql = f"{col}day >= ? AND {col}day <= ?"
    args: list[Any] = [(start or p.start).isoformat(), p.end.isoformat()]
    if stores is not None:
        sql += f" AND {col}store IN ({','.join('?' * len(stores))})"
        args += stores
    return sql, args


def report(conn: Connection, p: Period) -> dict[str, Any]:
    doc = newest_doc(conn)
    stores = stores_in(doc, p)
    with conn.snapshot():  # one consistent view of the figures
        return {
            "period": {"from": p.start.isoformat(), "to": p.end.isoformat(),
                       "store": p.store, "region": p.region, "stores": stores,
                       "tier": p.tier, "segment": p.segment},
            **_receipts(conn, p, stores),
            **_members(conn, p, stores),
            "cohorts": _cohorts(conn, p, stores),
            **_points(conn, p, _point_worth(doc)),
        }


def _sums(conn: Connection, p: Period, stores: list[str] | None) -> dict[int, dict[str, int]]:
    """Day figures summed by member (1) and not (0), under the period's filters."""
    where, args = _where(p, stores)
    cols = ("sales", "revenue", "returns", "returned", "earned", "redeemed", "clawback",
            "refund")
    total = ", ".join(f"COALESCE(SUM({c}), 0)" for c in cols)
    if p.segment is not None:
        rows = conn.execute(f"SELECT 1, {total} FROM kpi_segment_days WHERE {where}"
                            " AND segment = ?", (*args, p.segment)).fetchall()
    elif p.tier is not None:
        rows = conn.execute(f"SELECT 1, {total} FROM kpi_days WHERE {where} AND member = 1"
                            " AND tier = ?", (*args, p.tier)).fetchall()
    else:
        rows = conn.execute(f"SELECT member, {total} FROM kpi_days WHERE {where}"
                            " GROUP BY member", args).fetchall()
    out = {m: dict.fromkeys(cols, 0) for m in (0, 1)}
    for r in rows:
        out[int(r[0])] = dict(zip(cols, (int(v) for v in r[1:]), strict=True))
    return out


def _receipts(conn: Connection, p: Period, stores: list[str] | None) -> dict[str, Any]:
    s = _sums(conn, p, stores)
    members, others = s[1], s[0]
    # A tier's or segment's share is of all receipts; its "others" are nobody's.
    whole = s if p.tier is None and p.segment is None else _sums(
        conn, replace(p, tier=None, segment=None), stores)
    everyone = {k: whole[1][k] + whole[0][k] for k in members}
    return {
        "receipts": {
            "definition": "sales receipts in the period (returns counted apart, on the day"
                          " of the return); revenue: what the sales receipts came to, in"
                          " kopecks, before returns",
            "members": {k: members[k] for k in ("sales", "revenue", "returns", "returned")},
            "others": {k: others[k] for k in ("sales", "revenue", "returns", "returned")},
        },
        "participation": {
            "definition": "members' share (with a tier or segment: that tier's or"
                          " segment's) of all sales receipts and of revenue, in basis points",
            "receipts_bp": share(members["sales"], everyone["sales"]),
            "revenue_bp": share(members["revenue"], everyone["revenue"]),
        },
        "average_receipt": {
            "definition": "revenue / sales receipts, kopecks, members' receipts against"
                          " others'",
            "members_kopecks": ratio(members["revenue"], members["sales"]),
            "others_kopecks": ratio(others["revenue"], others["sales"]),
        },
        "points_flow": {
            "definition": "points on the period's receipts as the tills journalled them:"
                          " earned on sales, redeemed, clawed back and refunded on returns",
            **{k: members[k] + others[k] for k in ("earned", "redeemed", "clawback",
                                                   "refund")},
        },
    }


def _member_filter(p: Period) -> tuple[str, list[Any]]:
    """Restrict member rows (alias d) to the tier or segment the period names."""
    if p.tier is not None:
        return " AND c.tier = ?", [p.tier]
    if p.segment is not None:
        # Segments are a JSON list; a quoted match of the whole id, never a part of one.
        return " AND c.segments LIKE ?", [f'%"{p.segment}"%']
    return "", []


def _distinct_members(conn: Connection, p: Period, stores: list[str] | None,
                      start: date) -> int:
    where, args = _where(p, stores, "d", start)
    extra, more = _member_filter(p)
    join = " JOIN customers c ON c.id = d.customer_id" if extra else ""
    return int(conn.execute(
        f"SELECT COUNT(DISTINCT d.customer_id) FROM kpi_member_days d{join}"
        f" WHERE {where}{extra}", (*args, *more)).fetchone()[0])


def _members(conn: Connection, p: Period, stores: list[str] | None) -> dict[str, Any]:
    s = _sums(conn, p, stores)[1]
    active_from = p.end - timedelta(days=p.active_days - 1)
    active = _distinct_members(conn, p, stores, active_from)
    # One pass over this period and the one before: each member's first and last day in
    # them tells who bought now (buying), then (earlier), and then but not now (churned).
    before = p.previous()
    where, args = _where(p, stores, "d", before.start)
    extra, more = _member_filter(p)
    join = " JOIN customers c ON c.id = d.customer_id" if extra else ""
    now = p.start.isoformat()
    buying, earlier, churned = (int(v or 0) for v in conn.execute(
        "SELECT SUM(CASE WHEN last_day >= ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN first_day < ? THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN last_day < ? THEN 1 ELSE 0 END)"
        " FROM (SELECT d.customer_id, MIN(d.day) AS first_day, MAX(d.day) AS last_day"
        f"  FROM kpi_member_days d{join} WHERE {where}{extra} GROUP BY d.customer_id) AS m",
        (now, now, now, *args, *more)).fetchone())
    ltv = conn.execute("SELECT COUNT(*), COALESCE(SUM(revenue), 0) FROM kpi_members"
                       " WHERE first_day <= ?", (p.end.isoformat(),)).fetchone()
    return {
        "members": {
            "definition": "members who bought in the period (buying), and in the"
                          f" {p.active_days} days up to its end (active); by tier or"
                          " segment: the member's now (receipts: when they were counted)",
            "buying": buying,
            "active": active,
            "active_days": p.active_days,
        },
        "frequency": {
            "definition": "members' sales receipts per buying member in the period,"
                          " in thousandths",
            "receipts_per_member_milli": ratio(s["sales"] * 1000, buying),
        },
        "churn": {
            "definition": "members who bought in the previous period of the same length"
                          " and not in this one, as a share of those who bought then",
            "previous_buying": earlier,
            "churned": churned,
            "churn_bp": share(churned, earlier),
        },
        "ltv": {
            "definition": "historical lifetime value: members' revenue less returns since"
                          " their first purchase, per member, kopecks (whole programme)",
            "members": int(ltv[0]),
            "revenue": int(ltv[1]),
            "per_member_kopecks": ratio(int(ltv[1]), int(ltv[0])),
        },
    }


def _cohorts(conn: Connection, p: Period, stores: list[str] | None) -> dict[str, Any]:
    """Retention by the month of a member's first purchase: of each cohort whose month
    falls in the period, how many bought again in each later month up to the period's end."""
    first_month, last_month = p.start.isoformat()[:7], p.end.isoformat()[:7]
    where, args = _where(p, stores, "d")
    rows = conn.execute(
        "SELECT substr(m.first_day, 1, 7) AS cohort, substr(d.day, 1, 7) AS month,"
        " COUNT(DISTINCT d.customer_id) FROM kpi_members m"
        " JOIN kpi_member_days d ON d.customer_id = m.customer_id"
        f" WHERE m.first_day >= ? AND m.first_day <= ? AND {where}"
        " GROUP BY substr(m.first_day, 1, 7), substr(d.day, 1, 7)",
        (p.start.isoformat(), p.end.isoformat(), *args)).fetchall()
    table: dict[str, dict[str, int]] = {}
    for cohort, month, n in rows:
        table.setdefault(cohort, {})[month] = int(n)
    return {
        "definition": "members by the month of their first purchase (cohort) and how many"
                      " of them bought in each month of the period; retention_bp is each"
                      " month's count as a share of the cohort's first month",
        "from": first_month, "to": last_month,
        "by_cohort": {
            c: {"size": months.get(c, 0),
                "months": {m: {"buying": n, "retention_bp": share(n, months.get(c, 0))}
                           for m, n in sorted(months.items())}}
            for c, months in sorted(table.items())},
    }


def _points(conn: Connection, p: Period, worth: dict[str, int]) -> dict[str, Any]:
    start, after = p.start.isoformat(), (p.end + timedelta(days=1)).isoformat()
    expired = -int(conn.execute(
        "SELECT COALESCE(SUM(points), 0) FROM ledger WHERE kind = 'expire'"
        " AND at >= ? AND at < ?", (start, after)).fetchone()[0])
    snap = conn.execute("SELECT at, outstanding, expired, redeemed FROM kpi_points"
                        " ORDER BY at DESC LIMIT 1").fetchone()
    liability: dict[str, Any] = {
        "definition": "points outstanding at their worth, less the expected breakage: the"
                      " share of points that expired rather than being redeemed, observed"
                      " over the programme's whole history; kopecks",
        "as_of": None, "outstanding": None, "worth": worth, "breakage_bp": None,
        "kopecks": None,
    }
    if snap is not None:
        outstanding, gone = int(snap["outstanding"]), int(snap["expired"]) + int(
            snap["redeemed"])
        at_worth = outstanding * worth["kopecks"] // worth["steps"]
        kept = gone - int(snap["expired"])  # redeemed
        liability.update(
            as_of=snap["at"], outstanding=outstanding,
            breakage_bp=share(int(snap["expired"]), gone),
            kopecks=at_worth * kept // gone if gone else at_worth)
    return {
        "points_expired": {
            "definition": "points that expired in the period (whole programme: expiry"
                          " belongs to no store), by UTC day",
            "points": expired,
            "whole_programme": True,
        },
        "liability": liability,
    }


def _point_worth(doc: dict[str, Any]) -> dict[str, int]:
    """What a step of the programme's default unit is worth, from the newest rule set."""
    programme = doc.get("programme") or {}
    unit = (programme.get("units") or {}).get(programme.get("default_unit"), {})
    worth = unit.get("worth") or {}
    return {"steps": int(worth.get("steps", 1)) or 1, "kopecks": int(worth.get("kopecks", 0))}
