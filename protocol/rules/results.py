"""What the engine answers: the pricing of a draft and the settlement of a confirmed receipt.

Everything a journal stores round-trips through plain dict/list/int/str/bool/None (dates as
ISO 8601 strings), so it can be msgpack-encoded and re-read by the central.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from protocol.rules.explain import Explanation


def _dt(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _parse_dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s is not None else None


class Earning(NamedTuple):
    """Points of one unit from one campaign (on a line, in a bonus, or taken back).

    A named tuple rather than a dataclass: a receipt makes hundreds of these, and a frozen
    dataclass costs twice as much to build."""

    campaign: str
    unit: str
    points: int

    def to_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "unit": self.unit, "points": self.points}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Earning:
        return cls(d["campaign"], d["unit"], d["points"])


class Discount(NamedTuple):
    campaign: str
    amount: int  # kopecks

    def to_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "amount": self.amount}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Discount:
        return cls(d["campaign"], d["amount"])


@dataclass(frozen=True, slots=True)
class LineOutcome:
    index: int
    sku: str
    qty: int
    amount: int  # as charged before loyalty
    excluded: str = ""  # why the line is outside the programme
    discounts: tuple[Discount, ...] = ()
    earned: tuple[Earning, ...] = ()
    redeemed: int = 0  # points spent on this line (redemption unit)
    redeemed_money: int = 0  # what they paid, kopecks
    redeem_cap: int = 0  # the most points this line could take
    return_days: int = 0  # the line's return window, days

    @property
    def discount(self) -> int:
        return sum(d.amount for d in self.discounts)

    @property
    def net(self) -> int:
        """The line after instant discounts."""
        return self.amount - self.discount

    @property
    def paid(self) -> int:
        """The part of the line paid with money."""
        return self.net - self.redeemed_money

    def earned_in(self, unit: str) -> int:
        return sum(e.points for e in self.earned if e.unit == unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "sku": self.sku, "qty": self.qty, "amount": self.amount,
            "excluded": self.excluded, "discounts": [d.to_dict() for d in self.discounts],
            "earned": [e.to_dict() for e in self.earned], "redeemed": self.redeemed,
            "redeemed_money": self.redeemed_money, "redeem_cap": self.redeem_cap,
            "return_days": self.return_days,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineOutcome:
        return cls(
            index=d["index"], sku=d["sku"], qty=d["qty"], amount=d["amount"],
            excluded=d.get("excluded", ""),
            discounts=tuple(Discount.from_dict(x) for x in d.get("discounts", ())),
            earned=tuple(Earning.from_dict(x) for x in d.get("earned", ())),
            redeemed=d.get("redeemed", 0), redeemed_money=d.get("redeemed_money", 0),
            redeem_cap=d.get("redeem_cap", 0), return_days=d.get("return_days", 0),
        )


@dataclass(frozen=True, slots=True)
class ReceiptBonus:
    """Points given once per receipt, kept only while the receipt still earns them.

    A return re-checks the basket over `scope` (amount before loyalty, kopecks; quantity) and
    that each group in `requires` still has a line; if not, the whole bonus is taken back.
    """

    campaign: str
    unit: str
    points: int
    scope: tuple[int, ...] = ()
    min_amount: int | None = None
    min_qty: int | None = None
    requires: tuple[tuple[int, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign, "unit": self.unit, "points": self.points,
            "scope": list(self.scope), "min_amount": self.min_amount, "min_qty": self.min_qty,
            "requires": [list(g) for g in self.requires],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReceiptBonus:
        return cls(
            campaign=d["campaign"], unit=d["unit"], points=d["points"],
            scope=tuple(d.get("scope", ())), min_amount=d.get("min_amount"),
            min_qty=d.get("min_qty"), requires=tuple(tuple(g) for g in d.get("requires", ())),
        )


@dataclass(frozen=True, slots=True)
class Lot:
    """Earned points of one unit that activate and expire together."""

    unit: str
    points: int
    activates_at: datetime
    expires_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "points": self.points, "activates_at": _dt(self.activates_at),
            "expires_at": _dt(self.expires_at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Lot:
        return cls(d["unit"], d["points"], datetime.fromisoformat(d["activates_at"]),
                   _parse_dt(d.get("expires_at")))


@dataclass(frozen=True, slots=True)
class OfferGrant:
    """A personal offer for a next purchase (a cross-offer) that this receipt earned."""

    offer: str
    campaign: str
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"offer": self.offer, "campaign": self.campaign, "expires_at": _dt(self.expires_at)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OfferGrant:
        return cls(d["offer"], d["campaign"], datetime.fromisoformat(d["expires_at"]))


@dataclass(frozen=True, slots=True)
class Pricing:
    """The draft's pricing, before the customer chooses how many points to spend.

    Earned points assume nothing is spent; spending points lowers them when the programme
    does not earn on the part paid with points (settle gives the final figures).
    """

    ruleset_version: int
    unit: str  # the programme's default unit: `earned` is in it
    redeem_unit: str
    lines: tuple[LineOutcome, ...]
    receipt_bonuses: tuple[ReceiptBonus, ...]
    earned: int
    earned_by_unit: Mapping[str, int]
    discount: int
    total_amount: int  # before loyalty
    max_redeemable: int
    redeem_reason: str
    tier: str | None
    offers_granted: tuple[OfferGrant, ...]
    lots: tuple[Lot, ...]
    explanation: Explanation

    @property
    def to_pay(self) -> int:
        return self.total_amount - self.discount

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleset_version": self.ruleset_version, "unit": self.unit,
            "redeem_unit": self.redeem_unit, "lines": [x.to_dict() for x in self.lines],
            "receipt_bonuses": [b.to_dict() for b in self.receipt_bonuses],
            "earned": self.earned, "earned_by_unit": dict(self.earned_by_unit),
            "discount": self.discount, "total_amount": self.total_amount,
            "max_redeemable": self.max_redeemable, "redeem_reason": self.redeem_reason,
            "tier": self.tier, "offers_granted": [o.to_dict() for o in self.offers_granted],
            "lots": [x.to_dict() for x in self.lots], "explanation": self.explanation.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pricing:
        return cls(
            ruleset_version=d["ruleset_version"], unit=d["unit"], redeem_unit=d["redeem_unit"],
            lines=tuple(LineOutcome.from_dict(x) for x in d["lines"]),
            receipt_bonuses=tuple(ReceiptBonus.from_dict(x) for x in d["receipt_bonuses"]),
            earned=d["earned"], earned_by_unit=dict(d["earned_by_unit"]),
            discount=d["discount"], total_amount=d["total_amount"],
            max_redeemable=d["max_redeemable"], redeem_reason=d["redeem_reason"],
            tier=d.get("tier"),
            offers_granted=tuple(OfferGrant.from_dict(x) for x in d.get("offers_granted", ())),
            lots=tuple(Lot.from_dict(x) for x in d.get("lots", ())),
            explanation=Explanation.from_dict(d.get("explanation", {})),
        )


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of a confirmed receipt: what the journal records and a return works from.

    earned is in `unit` (the default unit) and includes receipt bonuses; earned_by_unit has
    every unit. redeemed is in `redeem_unit`, redeemed_money what it paid. campaign_totals
    gives what each campaign granted (points, or kopecks for discounts), so the agent can
    draw down its allowances. qualifying_amount is what counts toward tier spend.
    """

    ruleset_version: int
    at: datetime
    customer_id: str | None
    unit: str
    redeem_unit: str
    lines: tuple[LineOutcome, ...]
    receipt_bonuses: tuple[ReceiptBonus, ...]
    lots: tuple[Lot, ...]
    earned: int
    earned_by_unit: Mapping[str, int]
    redeemed: int
    redeemed_money: int
    discount: int
    total_amount: int
    tier: str | None = None
    tier_after: str | None = None
    qualifying_amount: int = 0
    offers_granted: tuple[OfferGrant, ...] = ()
    offers_used: tuple[str, ...] = ()
    campaign_totals: Mapping[str, int] = field(default_factory=dict)
    explanation: Explanation = field(default_factory=Explanation)
    # Campaigns whose control group this customer is in and that would otherwise have
    # applied (protocol.rules.holdout): the control group's receipts for campaign ROI.
    held_out: tuple[str, ...] = ()

    @property
    def paid_money(self) -> int:
        """What the customer pays in money."""
        return self.total_amount - self.discount - self.redeemed_money

    def to_dict(self) -> dict[str, Any]:
        return {
            "ruleset_version": self.ruleset_version, "at": _dt(self.at),
            "customer_id": self.customer_id, "unit": self.unit, "redeem_unit": self.redeem_unit,
            "lines": [x.to_dict() for x in self.lines],
            "receipt_bonuses": [b.to_dict() for b in self.receipt_bonuses],
            "lots": [x.to_dict() for x in self.lots], "earned": self.earned,
            "earned_by_unit": dict(self.earned_by_unit), "redeemed": self.redeemed,
            "redeemed_money": self.redeemed_money, "discount": self.discount,
            "total_amount": self.total_amount, "tier": self.tier, "tier_after": self.tier_after,
            "qualifying_amount": self.qualifying_amount,
            "offers_granted": [o.to_dict() for o in self.offers_granted],
            "offers_used": list(self.offers_used),
            "campaign_totals": dict(self.campaign_totals),
            "explanation": self.explanation.to_dict(),
            # only when there is one: journals of sales without a control group are unchanged
            **({"held_out": list(self.held_out)} if self.held_out else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Settlement:
        return cls(
            ruleset_version=d["ruleset_version"], at=datetime.fromisoformat(d["at"]),
            customer_id=d.get("customer_id"), unit=d["unit"], redeem_unit=d["redeem_unit"],
            lines=tuple(LineOutcome.from_dict(x) for x in d["lines"]),
            receipt_bonuses=tuple(ReceiptBonus.from_dict(x) for x in d.get("receipt_bonuses", ())),
            lots=tuple(Lot.from_dict(x) for x in d.get("lots", ())), earned=d["earned"],
            earned_by_unit=dict(d.get("earned_by_unit", {})), redeemed=d["redeemed"],
            redeemed_money=d["redeemed_money"], discount=d["discount"],
            total_amount=d["total_amount"], tier=d.get("tier"), tier_after=d.get("tier_after"),
            qualifying_amount=d.get("qualifying_amount", 0),
            offers_granted=tuple(OfferGrant.from_dict(x) for x in d.get("offers_granted", ())),
            offers_used=tuple(d.get("offers_used", ())),
            campaign_totals=dict(d.get("campaign_totals", {})),
            explanation=Explanation.from_dict(d.get("explanation", {})),
            held_out=tuple(d.get("held_out", ())),
        )


@dataclass(frozen=True, slots=True)
class ReturnLine:
    index: int
    qty: int  # returned now, thousandths
    clawback: tuple[Earning, ...]  # earned points taken back
    refund: int  # spent points given back (redemption unit)
    refund_money: int  # the returned share of what points had paid on the line, kopecks
    money: int  # money given back, kopecks

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "qty": self.qty,
            "clawback": [e.to_dict() for e in self.clawback], "refund": self.refund,
            "refund_money": self.refund_money, "money": self.money,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReturnLine:
        return cls(
            index=d["index"], qty=d["qty"],
            clawback=tuple(Earning.from_dict(x) for x in d.get("clawback", ())),
            refund=d["refund"], refund_money=d["refund_money"], money=d["money"],
        )


@dataclass(frozen=True, slots=True)
class ReturnOutcome:
    """One return against a settlement. clawback is in the default unit and includes receipt
    bonuses taken back; clawback_by_unit has every unit; refund is in the redemption unit.
    shortfall: how much of the clawback the given balance cannot cover (the ledger's debt)."""

    unit: str
    redeem_unit: str
    lines: tuple[ReturnLine, ...]
    clawback: int
    clawback_by_unit: Mapping[str, int]
    refund: int
    refund_money: int
    money: int
    bonuses_taken: tuple[Earning, ...]
    returned_after: Mapping[int, int]
    complete: bool  # everything on the receipt has now been returned
    shortfall: int = 0
    # Lines back after their window: "" (none), "taken back" or "kept" (the programme's
    # after_return_window), for the cashier to tell the customer.
    points_after_window: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "redeem_unit": self.redeem_unit,
            "lines": [x.to_dict() for x in self.lines], "clawback": self.clawback,
            "clawback_by_unit": dict(self.clawback_by_unit), "refund": self.refund,
            "refund_money": self.refund_money, "money": self.money,
            "bonuses_taken": [e.to_dict() for e in self.bonuses_taken],
            # string keys: the same dict must survive JSON as well as msgpack
            "returned_after": {str(k): v for k, v in sorted(self.returned_after.items())},
            "complete": self.complete, "shortfall": self.shortfall,
            "points_after_window": self.points_after_window,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReturnOutcome:
        return cls(
            unit=d["unit"], redeem_unit=d["redeem_unit"],
            lines=tuple(ReturnLine.from_dict(x) for x in d["lines"]), clawback=d["clawback"],
            clawback_by_unit=dict(d["clawback_by_unit"]), refund=d["refund"],
            refund_money=d["refund_money"], money=d["money"],
            bonuses_taken=tuple(Earning.from_dict(x) for x in d.get("bonuses_taken", ())),
            returned_after={int(k): v for k, v in d["returned_after"].items()},
            complete=d["complete"], shortfall=d.get("shortfall", 0),
            points_after_window=d.get("points_after_window", ""),
        )
