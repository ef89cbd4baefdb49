"""A campaign's dry run: sample receipts priced with and without a change, side by side.

Priced by the rules engine the tills run (protocol.rules.settle), once with the newest rule
set and once with the same document in which the campaign is replaced (or added) as it
would be live (a draft or paused one is tried as if live): the difference per receipt is
what the change would do. The samples are given in the request, or are the newest sales of
the journal, priced for the customer as the till saw them (the view the till journalled),
at the moment and with the redemption they were sold with.

Nothing is stored; the answer names receipts by till and receipt id, never a customer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central import rulesets
from central.db import Connection
from central.errors import Refused
from protocol import bounds
from protocol.rules import (
    Customer,
    InputError,
    Receipt,
    ReceiptLine,
    RedemptionError,
    RuleSet,
    RuleSetError,
    Settlement,
    compile_encoded,
    settle,
)
from protocol.wire import InvalidMessage, pack, unpack

MAX_SAMPLES = 200
DEFAULT_LAST = 20
LAST = bounds.IntRange(1, MAX_SAMPLES, "receipts")
REDEEM = bounds.POINTS


@dataclass(frozen=True)
class Sample:
    ref: str  # "receipts[3]" for a given one, "<till>/<receipt id>" for a journalled one
    receipt: Receipt
    customer: Customer | None
    at: datetime | None  # None: priced at the moment of the dry run
    redeem: int


@dataclass(frozen=True)
class DryRun:
    given: tuple[Sample, ...]  # empty: the newest `last` sales of the journal
    last: int

    @classmethod
    def read(cls, body: Mapping[str, Any]) -> DryRun:
        """The request's samples, each checked where it enters (400 naming the field)."""
        raw = body.get("receipts")
        last = body.get("last")
        if raw is not None and last is not None:
            raise Refused(400, "give 'receipts' or 'last', not both")
        if raw is None:
            return cls((), DEFAULT_LAST if last is None else LAST.check(last, "last"))
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_SAMPLES:
            raise Refused(400, f"field 'receipts' must be a list of 1 to {MAX_SAMPLES}"
                               " receipts")
        return cls(tuple(_sample(s, f"receipts[{i}]") for i, s in enumerate(raw)), 0)


def _sample(value: object, path: str) -> Sample:
    if not isinstance(value, dict) or not isinstance(value.get("receipt"), dict):
        raise Refused(400, f"field '{path}.receipt' is required: lines and store")
    bounds.check_tree(value, path)
    extra = set(value) - {"receipt", "customer", "at", "redeem"}
    if extra:
        raise Refused(400, f"field '{path}.{sorted(extra)[0]}' is unknown (receipt, customer,"
                           " at, redeem)")
    try:
        receipt = Receipt.from_dict(value["receipt"])
    except (KeyError, TypeError, ValueError) as e:
        raise Refused(400, f"field '{path}.receipt' is not a receipt (lines of sku, qty,"
                           f" price, amount; store): {type(e).__name__} {e}") from None
    customer = None
    if value.get("customer") is not None:
        try:
            customer = Customer.from_dict(value["customer"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise Refused(400, f"field '{path}.customer' is not a customer: {e}") from None
    at = None
    if value.get("at") is not None:
        try:
            at = datetime.fromisoformat(value["at"])
        except (TypeError, ValueError):
            raise Refused(400, f"field '{path}.at' must be an ISO 8601 date-time") from None
        if at.tzinfo is None:
            raise Refused(400, f"field '{path}.at' must carry a UTC offset")
    redeem = REDEEM.check(value.get("redeem", 0), f"{path}.redeem")
    return Sample(path, receipt, customer, at, redeem)


def journalled(conn: Connection, last: int) -> list[Sample]:
    """The newest `last` sales of the journal (in ingest order, newest first) that carry
    what pricing needs; others are skipped."""
    rows = conn.execute(
        "SELECT j.till_id, j.receipt_id, j.body FROM ingest_log l JOIN journal j"
        " ON j.till_id = l.till_id AND j.epoch = l.epoch"
        " AND j.seq BETWEEN l.first_seq AND l.last_seq"
        " WHERE j.kind = 'sale' ORDER BY l.ingest_seq DESC, j.seq DESC LIMIT ?",
        (last * 2,)).fetchall()
    out: list[Sample] = []
    for r in rows:
        try:
            entry = unpack(r["body"])
            detail = entry["detail"]
            # the line amount rounded half up to the kopeck, as the fiscal printer does
            # (as central.repricing prices it)
            receipt = Receipt(lines=tuple(
                ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                            amount=(ln["qty"] * ln["price"] + 500) // 1000,
                            category=ln.get("category", ""), brand=ln.get("brand", ""),
                            flags=frozenset(ln.get("flags", ())))
                for ln in detail["lines"]), store=entry["store"])
            known = detail.get("customer")
            customer = Customer.from_dict(known) if isinstance(known, dict) else None
            sample = Sample(f"{r['till_id']}/{r['receipt_id']}", receipt, customer,
                            datetime.fromisoformat(entry["at"]), int(entry.get("redeemed", 0)))
        except (InvalidMessage, KeyError, TypeError, ValueError):
            continue  # re-pricing raises the alert for an unreadable sale
        out.append(sample)
        if len(out) == last:
            break
    return out


def _figures(s: Settlement | None, campaign_id: str) -> dict[str, Any]:
    if s is None:
        return {"priced": False}
    own_points = sum(e.points for ln in s.lines for e in ln.earned if e.campaign == campaign_id)
    own_points += sum(b.points for b in s.receipt_bonuses if b.campaign == campaign_id)
    own_discount = sum(d.amount for ln in s.lines for d in ln.discounts
                       if d.campaign == campaign_id)
    return {"priced": True, "earned": s.earned, "discount": s.discount,
            "redeemed": s.redeemed, "to_pay": s.paid_money,
            "campaign": {"points": own_points, "discount": own_discount},
            "campaigns": sorted(s.campaign_totals)}


def _settle(rs: RuleSet, sample: Sample, now: datetime) -> tuple[Settlement | None, str]:
    at = sample.at or now
    try:
        return settle(rs, sample.receipt, sample.customer, at, sample.redeem), ""
    except RedemptionError as e:
        # The change may lower what may be spent: priced without spending, and said so.
        try:
            return settle(rs, sample.receipt, sample.customer, at, 0), f"redemption: {e}"
        except (InputError, RedemptionError) as again:
            return None, str(again)
    except InputError as e:
        return None, str(e)


def run(conn: Connection, rule: Mapping[str, Any], dry: DryRun,
        now: datetime) -> dict[str, Any]:
    """Price the samples with the newest rule set and with `rule` in it (already checked)."""
    current = rulesets.current(conn)
    # Compiled from each campaign's encoded form, as a till compiles a new version: the
    # second compile reuses all but the changed campaign (a tenth of the time at 10,000).
    encoded = [(c.get("id"), pack(c)) for c in current.doc.get("campaigns") or ()]
    before_doc = {**current.doc, "campaigns": [e for _, e in encoded]}
    after_doc = {**current.doc, "campaigns": [e for cid, e in encoded if cid != rule["id"]]
                 + [pack(dict(rule))]}
    try:
        before_rs, known = compile_encoded(before_doc, unpack)
        after_rs, _ = compile_encoded(after_doc, unpack, known)
    except RuleSetError as e:
        raise Refused(422, f"the rule set with this campaign would be refused: {e}") from None
    samples = list(dry.given) or journalled(conn, dry.last)
    rows = []
    points_delta = discount_delta = changed = 0
    for sample in samples:
        before, why_before = _settle(before_rs, sample, now)
        after, why_after = _settle(after_rs, sample, now)
        b, a = _figures(before, str(rule["id"])), _figures(after, str(rule["id"]))
        row: dict[str, Any] = {"receipt": sample.ref, "store": sample.receipt.store,
                               "member": sample.customer is not None
                               and sample.customer.id is not None,
                               "before": b, "after": a}
        if before is not None and after is not None:
            row["points_change"] = after.earned - before.earned
            row["discount_change"] = after.discount - before.discount
            points_delta += row["points_change"]
            discount_delta += row["discount_change"]
            changed += int(json.dumps(b, sort_keys=True) != json.dumps(a, sort_keys=True))
        if why_before or why_after:
            row["notes"] = [w for w in (why_before, why_after) if w]
        rows.append(row)
    return {"campaign": rule["id"], "ruleset_version": current.version,
            "source": "given" if dry.given else "journal",
            "receipts": rows,
            "totals": {"receipts": len(rows), "changed": changed,
                       "points_change": points_delta, "discount_change": discount_delta}}
