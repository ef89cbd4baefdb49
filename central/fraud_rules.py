"""The programme's fraud rules: which are on, their thresholds, and whether a hit holds points.

One document for the programme, kept at the central and changed through the head-office
API (central.api_fraud). Every figure is an integer checked where it enters, with a
message naming the field; what a PUT leaves out keeps its current value. The rules
themselves run in central.fraud_watch as receipts arrive.

A rule only raises hits: an alert with its evidence, and for the rules about one
customer's points optionally a hold on those points (central.fraud_holds) until a person
releases or confirms it. No rule blocks a card or a customer: that is a person's decision.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from central.clock import iso
from central.db import Connection
from central.errors import Refused
from protocol import bounds

# rule -> field -> (default, low, high). `enabled` and `hold` are booleans beside these.
THRESHOLDS: dict[str, dict[str, tuple[int, int, int]]] = {
    # (a) one card (customer) buying in several stores within minutes
    "card-many-stores": {"stores": (2, 2, 100), "minutes": (10, 1, 24 * 60)},
    # (b) a cashier far above the store's median cashier, per measure, over some days
    "cashier-unusual": {"days": (7, 1, 90), "min_count": (10, 1, 1_000_000),
                        "factor_percent": (300, 101, 100_000)},
    # (c) points spent soon after a person added points by hand
    "redeem-after-adjustment": {"minutes": (60, 1, 30 * 24 * 60),
                                "min_points": (1, 1, bounds.MAX_COUNTER)},
    # (d) many cards on one phone (one customer account)
    "cards-per-phone": {"max_cards": (3, 1, 1000)},
    # (e) most of a large accrual spent at once
    "spent-after-accrual": {"min_accrual": (1000, 1, bounds.MAX_COUNTER),
                            "minutes": (60, 1, 30 * 24 * 60),
                            "spent_percent": (80, 1, 100)},
    # (f) re-pricing mismatches of one till
    "till-mismatches": {"count": (3, 1, 1_000_000), "hours": (24, 1, 24 * 90)},
}
# Rules whose hit concerns one customer's points, and so may hold them.
HOLDING = ("card-many-stores", "redeem-after-adjustment", "cards-per-phone",
           "spent-after-accrual")
HOLD_BY_DEFAULT = ("card-many-stores", "spent-after-accrual")
RULES = tuple(THRESHOLDS)


def defaults() -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, Any]] = {}
    for rule, fields in THRESHOLDS.items():
        doc[rule] = {"enabled": True, **{k: v[0] for k, v in fields.items()}}
        if rule in HOLDING:
            doc[rule]["hold"] = rule in HOLD_BY_DEFAULT
    return doc


def merged(current: dict[str, dict[str, Any]], change: Any) -> dict[str, dict[str, Any]]:
    """`current` with `change` (a partial document) applied; Refused(400) naming the first
    field that is wrong. Nothing of a refused change is kept."""
    if not isinstance(change, dict):
        raise Refused(400, "request body must be a JSON object of rules")
    doc = copy.deepcopy(current)
    for rule, fields in change.items():
        if rule not in THRESHOLDS:
            raise Refused(400, f"unknown rule {rule!r}: the rules are {', '.join(RULES)}")
        if not isinstance(fields, dict):
            raise Refused(400, f"field {rule!r} must be an object of thresholds")
        for name, value in fields.items():
            where = f"{rule}.{name}"
            if name in ("enabled", "hold"):
                if name == "hold" and rule not in HOLDING:
                    raise Refused(400, f"field {where!r}: this rule concerns no customer's"
                                       " points, so it cannot hold any")
                if not isinstance(value, bool):
                    raise Refused(400, f"field {where!r} must be true or false")
            elif name in THRESHOLDS[rule]:
                _, lo, hi = THRESHOLDS[rule][name]
                if type(value) is not int or not lo <= value <= hi:
                    raise Refused(400, f"field {where!r} must be an integer from {lo} to {hi}")
            else:
                known = ", ".join(sorted(defaults()[rule]))
                raise Refused(400, f"field {where!r} is unknown: {rule} has {known}")
            doc[rule][name] = value
    return doc


def current(conn: Connection) -> dict[str, dict[str, Any]]:
    """The rules in force: the stored document over the defaults (a rule added in a later
    version starts with its defaults)."""
    row = conn.execute("SELECT doc FROM fraud_rules WHERE id = 1").fetchone()
    doc = defaults()
    if row is not None:
        for rule, fields in json.loads(row["doc"]).items():
            if rule in doc:
                doc[rule].update(fields)
    return doc


def save(conn: Connection, doc: dict[str, dict[str, Any]], actor: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO fraud_rules (id, doc, updated_at, actor) VALUES (1, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc,"
        " updated_at = excluded.updated_at, actor = excluded.actor",
        (json.dumps(doc, sort_keys=True), iso(now), actor))
