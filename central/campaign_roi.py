"""Campaign ROI: what a campaign added over its control group, against what it cost.

Who is compared. A campaign with a `holdout` holds out a share of members, drawn by a hash
of the rule set's salt, the campaign and the customer (protocol.rules.holdout), at the till
and in re-pricing alike. On each member's receipt a campaign is either:
- treated: it gave the receipt something (points on a line, a receipt bonus, a discount,
  an offer for the next purchase);
- control: it would have applied, but the customer is in its control group (the settlement's
  `held_out`).
Anonymous receipts are in neither group. Both groups are thus receipts the campaign applies
to, with and without the campaign.

Kept up as receipts arrive: a follower of the journal (the ingest sequence, like
central.campaign_figures) adds each member's sale, for the campaigns that hold out a control
group in the rule set it was priced with, to small rollups by campaign, store-local day and
group: receipts, revenue, and the points and discount the campaign gave; quantity and
revenue by SKU; which customers bought. A request reads days, never receipts; the cost of
goods is priced at read time from the product cost feed (central.product_costs) as it is then.

The figures, for a period of store-local days (`from`..`to`, both included):
- revenue: the receipts' lines after instant discounts (what was paid in money and points);
- cost of goods: per SKU, quantity × the feed's cost, rounded half up to the kopeck;
- gross margin: revenue − cost of goods; for SKUs the feed has no cost for, the revenue
  itself, shown apart as the part on basis "revenue";
- per customer: a group's margin (and revenue) over its distinct customers in the period;
- incremental gross margin = (treated margin per customer − control margin per customer)
  × treated customers, worked out from the sums (one rounding, to the kopeck, half even);
- cost = the campaign's points at their worth (the newest rule set's worth of the default
  unit, as the KPI report values points) + the discounts it gave;
- ROI = (incremental − cost) / cost, as basis points (rounded half even) and as a decimal
  string with four places. Null, with the reason, where a group is empty or nothing was spent.
Returns are not subtracted (the figures are what was sold, as campaign figures count it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, tzinfo
from fractions import Fraction
from typing import Any

from central import ingest_log, product_costs
from central.campaign_figures import given_by
from central.clock import parse_iso
from central.db import Connection, transaction
from central.kpi_counts import store_zone
from central.repricing import RuleSets
from protocol.wire import InvalidMessage, unpack

CHUNK = 1000
BP = 10_000
TREATED, CONTROL = 0, 1
GROUPS = {TREATED: "treated", CONTROL: "control"}


@dataclass
class _Sums:
    # (campaign, day, group) -> [receipts, revenue, points, discount]
    days: dict[tuple[str, str, int], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    # (campaign, day, group, sku) -> [qty, revenue]
    skus: dict[tuple[str, str, int, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))
    # (campaign, day, group, customer) -> receipts
    customers: dict[tuple[str, str, int, str], int] = field(
        default_factory=lambda: defaultdict(int))


def count_pending(conn: Connection, rulesets: RuleSets | None = None,
                  limit: int = CHUNK) -> int:
    """Add the members' sales of the next `limit` journal entries to the rollups; returns
    how many entries were looked at (0: nothing new, or another process counted them)."""
    rulesets = rulesets or RuleSets(conn)
    start = conn.execute("SELECT ingest_seq FROM campaign_roi_accounting"
                         " WHERE name = 'journal'").fetchone()[0]
    page = ingest_log.entries_after(
        conn, start, limit, "r.kind, r.customer_id, r.store, r.at, r.ruleset_version, j.body",
        join="JOIN receipts r ON r.till_id = j.till_id AND r.receipt_id = j.receipt_id")
    if page.upto == start:
        return 0
    sums = _Sums()
    zones: dict[tuple[int, str], tzinfo] = {}
    measured: dict[int, frozenset[str]] = {}
    for r in page.rows:
        if r["kind"] != "sale" or not r["customer_id"]:
            continue  # anonymous receipts are in neither group
        try:
            settled = unpack(r["body"])["detail"]["settlement"]
            given = given_by(settled)
            for grant in settled.get("offers_granted") or ():
                # an offer for next time is what such a campaign gives; it costs at its use
                given.setdefault(str(grant["campaign"]), (0, 0))
            held = [str(c) for c in settled.get("held_out") or ()]
            lines = [(str(ln["sku"]), int(ln["qty"]),
                      int(ln["amount"]) - sum(int(d["amount"]) for d in ln.get("discounts")
                                              or ()))
                     for ln in settled.get("lines") or ()]
        except (InvalidMessage, KeyError, TypeError, ValueError, AttributeError):
            continue  # unreadable: re-pricing raises the alert for it
        version = r["ruleset_version"]
        if version not in measured:
            measured[version] = _with_holdout(rulesets, version)
        given = {c: v for c, v in given.items() if c in measured[version]}
        if not given and not held:
            continue
        where = (version, r["store"])
        if where not in zones:
            zones[where] = store_zone(rulesets, *where)
        day = parse_iso(r["at"]).astimezone(zones[where]).date().isoformat()
        revenue = sum(net for _, _, net in lines)
        groups = [(c, TREATED, *given[c]) for c in given] + [
            (c, CONTROL, 0, 0) for c in held if c not in given]
        for campaign, group, points, discount in groups:
            d = sums.days[(campaign, day, group)]
            d[0] += 1
            d[1] += revenue
            d[2] += points
            d[3] += discount
            for sku, qty, net in lines:
                s = sums.skus[(campaign, day, group, sku)]
                s[0] += qty
                s[1] += net
            sums.customers[(campaign, day, group, r["customer_id"])] += 1
    with transaction(conn):
        if not ingest_log.claim(conn, "campaign_roi_accounting", "journal", start, page.upto):
            return 0
        _write(conn, sums)
    return max(1, len(page.rows))


def _with_holdout(rulesets: RuleSets, version: int) -> frozenset[str]:
    """The campaigns of a rule-set version that hold out a control group: only those are
    followed (without a control group there is nothing to compare, and the always-on
    campaigns would copy every member's receipt into the rollups)."""
    rs = rulesets.get(version)
    return frozenset(c.id for c in rs.campaigns if c.holdout_bp) if rs else frozenset()


def _write(conn: Connection, sums: _Sums) -> None:
    conn.executemany(
        "INSERT INTO campaign_roi_days (campaign_id, day, control, receipts, revenue, points,"
        " discount) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, day, control)"
        " DO UPDATE SET receipts = campaign_roi_days.receipts + excluded.receipts,"
        " revenue = campaign_roi_days.revenue + excluded.revenue,"
        " points = campaign_roi_days.points + excluded.points,"
        " discount = campaign_roi_days.discount + excluded.discount",
        [(*k, *v) for k, v in sorted(sums.days.items())])
    conn.executemany(
        "INSERT INTO campaign_roi_skus (campaign_id, day, control, sku, qty, revenue)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, day, control, sku)"
        " DO UPDATE SET qty = campaign_roi_skus.qty + excluded.qty,"
        " revenue = campaign_roi_skus.revenue + excluded.revenue",
        [(*k, *v) for k, v in sorted(sums.skus.items())])
    conn.executemany(
        "INSERT INTO campaign_roi_customers (campaign_id, day, control, customer_id, receipts)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign_id, day, control, customer_id)"
        " DO UPDATE SET receipts = campaign_roi_customers.receipts + excluded.receipts",
        [(*k, v) for k, v in sorted(sums.customers.items())])


def behind(conn: Connection) -> int:
    start = conn.execute("SELECT ingest_seq FROM campaign_roi_accounting"
                         " WHERE name = 'journal'").fetchone()[0]
    return ingest_log.entries_behind(conn, start)


# -- the figures ---------------------------------------------------------------------------


def group_receipts(conn: Connection, campaign_id: str) -> dict[str, int]:
    """Members' receipts in each group since the campaign began (for its figures)."""
    got = {r["control"]: int(r["n"]) for r in conn.execute(
        "SELECT control, SUM(receipts) AS n FROM campaign_roi_days WHERE campaign_id = ?"
        " GROUP BY control", (campaign_id,))}
    return {"treated": got.get(TREATED, 0), "control": got.get(CONTROL, 0)}


def roi(conn: Connection, campaign_id: str, start: date, end: date) -> dict[str, Any]:
    """The campaign's ROI over store-local days start..end, with every input shown."""
    args = (campaign_id, start.isoformat(), end.isoformat())
    period = "campaign_id = ? AND day >= ? AND day <= ?"
    with conn.snapshot():  # one consistent view of the rollups
        days = {r["control"]: r for r in conn.execute(
            "SELECT control, SUM(receipts) AS receipts, SUM(revenue) AS revenue,"
            f" SUM(points) AS points, SUM(discount) AS discount FROM campaign_roi_days"
            f" WHERE {period} GROUP BY control", args)}
        people = {r["control"]: r["n"] for r in conn.execute(
            "SELECT control, COUNT(DISTINCT customer_id) AS n FROM campaign_roi_customers"
            f" WHERE {period} GROUP BY control", args)}
        skus: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
        for r in conn.execute(
                "SELECT control, sku, SUM(qty) AS qty, SUM(revenue) AS revenue"
                f" FROM campaign_roi_skus WHERE {period} GROUP BY control, sku", args):
            skus[r["control"]].append((r["sku"], r["qty"], r["revenue"]))
        costs = product_costs.costs_of(conn, {s for g in skus.values() for s, _, _ in g})
        worth = _point_worth(conn)
        lag = behind(conn)
    groups = {g: _group(days.get(g), people.get(g, 0), skus.get(g, []), costs)
              for g in GROUPS}
    treated, control = groups[TREATED], groups[CONTROL]
    points = int(days[TREATED]["points"]) if TREATED in days else 0
    discount = int(days[TREATED]["discount"]) if TREATED in days else 0
    points_money = points * worth["kopecks"] // worth["steps"]
    cost = points_money + discount
    incremental, why_not = None, None
    if not treated["customers"] or not control["customers"]:
        why_not = "no receipts of the " + ("treated" if not treated["customers"] else "control") \
            + " group in the period (only a campaign with a holdout has a control group)"
    else:
        exact = Fraction(treated["margin"]) - Fraction(
            control["margin"] * treated["customers"], control["customers"])
        incremental = round(exact)  # half even, to the kopeck
    ratio: dict[str, Any] = {"roi_bp": None, "roi": None, "why_not": why_not}
    if incremental is not None:
        if cost == 0:
            ratio["why_not"] = "the campaign cost nothing in the period"
        else:
            r = Fraction(incremental - cost, cost)
            ratio = {"roi_bp": round(r * BP), "roi": _decimal(r, 4), "why_not": None}
    bases = {g["basis"] for g in groups.values() if g["customers"]}
    return {
        "campaign": campaign_id,
        "period": {"from": start.isoformat(), "to": end.isoformat(),
                   "days": "store-local, both included"},
        "treated": treated, "control": control,
        "basis": bases.pop() if len(bases) == 1 else ("mixed" if bases else None),
        "incremental_margin": {
            "kopecks": incremental,
            "definition": "(treated margin per customer − control margin per customer)"
                          " × treated customers",
            "inputs": {"treated_margin": treated["margin"],
                       "treated_customers": treated["customers"],
                       "control_margin": control["margin"],
                       "control_customers": control["customers"]}},
        "cost": {"kopecks": cost,
                 "definition": "points the campaign granted at their worth + discounts it gave",
                 "inputs": {"points": points, "worth": worth, "points_kopecks": points_money,
                            "discount": discount}},
        **ratio,
        "definition": "ROI = (incremental gross margin − cost) / cost",
        "behind": lag,  # journal entries not yet in the rollups
    }


def _group(days: Any, customers: int, skus: list[tuple[str, int, int]],
           costs: dict[str, int]) -> dict[str, Any]:
    costed_revenue = cogs = uncosted_revenue = 0
    costed_skus = uncosted_skus = 0
    for sku, qty, revenue in skus:
        if sku in costs:
            costed_revenue += revenue
            cogs += (qty * costs[sku] + 500) // 1000  # qty in thousandths, half up
            costed_skus += 1
        else:
            uncosted_revenue += revenue
            uncosted_skus += 1
    revenue = costed_revenue + uncosted_revenue
    margin = costed_revenue - cogs + uncosted_revenue
    basis = "revenue" if costed_skus == 0 and uncosted_skus else \
        "mixed" if uncosted_skus else "margin"
    return {
        "customers": customers, "receipts": int(days["receipts"]) if days else 0,
        "revenue": revenue, "cost_of_goods": cogs, "margin": margin, "basis": basis,
        "parts": [
            {"basis": "margin", "skus": costed_skus, "revenue": costed_revenue,
             "cost_of_goods": cogs, "margin": costed_revenue - cogs},
            {"basis": "revenue", "skus": uncosted_skus, "revenue": uncosted_revenue,
             "margin": uncosted_revenue,
             "note": "no cost in the product cost feed: counted on revenue"},
        ],
        "revenue_per_customer": _per(revenue, customers),
        "margin_per_customer": _per(margin, customers),
    }


def _per(total: int, n: int) -> int | None:
    return round(Fraction(total, n)) if n else None  # shown to the kopeck; sums stay exact


def _decimal(r: Fraction, places: int) -> str:
    scaled = round(r * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def _point_worth(conn: Connection) -> dict[str, int]:
    """A step of the programme's default unit, from the newest rule set (as kpi_report)."""
    row = conn.execute("SELECT doc FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    doc = json.loads(row["doc"]) if row else {}
    prog = doc.get("programme") or {}
    unit = (prog.get("units") or {}).get(prog.get("default_unit") or "points") or {}
    worth = unit.get("worth") or {}
    return {"steps": int(worth.get("steps", 1)) or 1, "kopecks": int(worth.get("kopecks", 0))}
