"""The compiled rule set: immutable objects built once from the head-office document.

Everything here is already validated; the evaluator never re-checks the document. Percents
are kept in basis points (hundredths of a percent), multipliers in hundredths ("1.5" = 150),
money in kopecks, times of day in minutes after midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING

from protocol.rules.inputs import ReceiptLine

if TYPE_CHECKING:
    from protocol.rules.index import CampaignIndex

BP = 10_000  # basis points in 100 %

# Effect kinds. Line effects put points or a discount on matched lines; receipt effects act
# once per receipt (a bonus, an offer for next time).
PERCENT = "percent"
PER_AMOUNT = "per_amount"
PER_UNIT = "per_unit"
PER_RECEIPT = "per_receipt"
MULTIPLIER = "multiplier"
DISCOUNT_PERCENT = "discount_percent"
DISCOUNT_AMOUNT = "discount_amount"
DISCOUNT_PER_UNIT = "discount_per_unit"
GRANT_OFFER = "grant_offer"

ACCRUAL_KINDS = frozenset({PERCENT, PER_AMOUNT, PER_UNIT, PER_RECEIPT, MULTIPLIER})
DISCOUNT_KINDS = frozenset({DISCOUNT_PERCENT, DISCOUNT_AMOUNT, DISCOUNT_PER_UNIT})
RECEIPT_KINDS = frozenset({PER_RECEIPT, GRANT_OFFER})
MULTIPLIABLE_KINDS = frozenset({PERCENT, PER_AMOUNT, PER_UNIT})


@lru_cache(maxsize=4096)  # pure, and a store sells the same few hundred categories all day
def category_prefixes(category: str) -> frozenset[str]:
    """"sports/shoes/running" -> {"sports", "sports/shoes", "sports/shoes/running"}."""
    if not category:
        return frozenset()
    parts = category.split("/")
    return frozenset("/".join(parts[: i + 1]) for i in range(len(parts)))


@dataclass(frozen=True, slots=True)
class Unit:
    """A point unit. `steps` smallest steps of it are worth `kopecks` kopecks."""

    id: str
    decimals: int
    steps: int
    kopecks: int

    def money(self, points: int) -> int:
        """What `points` steps are worth, in kopecks, rounded down."""
        return points * self.kopecks // self.steps

    def points_for(self, kopecks: int) -> int:
        """The most steps worth no more than `kopecks`."""
        return kopecks * self.steps // self.kopecks


@dataclass(frozen=True, slots=True)
class Selector:
    """Which lines a rule covers. Within a field any value matches; fields combine with AND;
    empty fields do not restrict. A category covers its whole subtree."""

    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    not_skus: frozenset[str] = frozenset()
    not_categories: frozenset[str] = frozenset()
    not_brands: frozenset[str] = frozenset()
    not_flags: frozenset[str] = frozenset()

    @property
    def is_any(self) -> bool:
        return not (
            self.skus or self.categories or self.brands or self.flags or self.not_skus
            or self.not_categories or self.not_brands or self.not_flags
        )

    def matches(self, line: ReceiptLine, prefixes: frozenset[str]) -> bool:
        if self.skus and line.sku not in self.skus:
            return False
        if self.categories and self.categories.isdisjoint(prefixes):
            return False
        if self.brands and line.brand not in self.brands:
            return False
        if self.flags and self.flags.isdisjoint(line.flags):
            return False
        if self.not_skus and line.sku in self.not_skus:
            return False
        if self.not_categories and not self.not_categories.isdisjoint(prefixes):
            return False
        if self.not_brands and line.brand in self.not_brands:
            return False
        return not (self.not_flags and not self.not_flags.isdisjoint(line.flags))


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Goods outside the programme: a line is excluded if ANY field matches it."""

    skus: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    brands: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()

    def reason(self, line: ReceiptLine, prefixes: frozenset[str]) -> str:
        """Why the line is excluded ("category tobacco"), or "" if it is not."""
        if line.sku in self.skus:
            return f"sku {line.sku}"
        hit = self.categories & prefixes
        if hit:
            return f"category {min(hit)}"
        if line.brand and line.brand in self.brands:
            return f"brand {line.brand}"
        hit = self.flags & line.flags
        if hit:
            return f"flag {min(hit)}"
        return ""


@dataclass(frozen=True, slots=True)
class Conditions:
    """When a campaign applies. None / empty means no restriction; all conditions must hold."""

    active_from: datetime | None = None  # inclusive
    active_to: datetime | None = None  # exclusive
    weekdays: frozenset[int] = frozenset()  # ISO 1 = Monday
    hours: tuple[tuple[int, int], ...] = ()  # [from, to) minutes of the day; may wrap midnight
    stores: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()  # any of
    segments_all: frozenset[str] = frozenset()
    not_segments: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    birthday_within_days: int | None = None
    first_purchase: bool = False
    nth_purchase: int | None = None  # this receipt is the customer's Nth purchase
    every_nth_purchase: int | None = None  # every Nth purchase
    offers: frozenset[str] = frozenset()  # all must be activated by the customer
    min_amount: int | None = None  # basket of matched lines, kopecks before loyalty
    min_qty: int | None = None  # basket of matched lines, thousandths
    requires: tuple[Selector, ...] = ()  # each must match some line (buy X and Y)

    @property
    def needs_member(self) -> bool:
        return bool(
            self.segments or self.segments_all or self.tiers or self.offers or self.first_purchase
            or self.nth_purchase or self.every_nth_purchase
            or self.birthday_within_days is not None
        )


@dataclass(frozen=True, slots=True)
class Effect:
    kind: str
    unit: str = ""  # accrual effects
    bp: int = 0  # percent, discount_percent
    by_tier: Mapping[str, int] = field(default_factory=dict)  # percent per tier (bp)
    points: int = 0  # per_amount, per_unit, per_receipt
    per: int = 0  # per_amount: each full `per` kopecks
    factor: int = 0  # multiplier, hundredths
    of: str = ""  # multiplier: id of the campaign whose points are multiplied
    amount: int = 0  # discount_amount: kopecks per receipt; discount_per_unit: per unit
    offer: str = ""  # grant_offer
    valid_days: int = 0  # grant_offer

    def bp_for(self, tier: str | None) -> int:
        if tier is not None and tier in self.by_tier:
            return self.by_tier[tier]
        return self.bp


@dataclass(frozen=True, slots=True)
class Budget:
    """Head office's caps; the central enforces them and gives tills allowances."""

    total: int | None = None
    per_customer: int | None = None
    period: str = "campaign"  # day, week, month, year, campaign


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    name: str
    priority: int
    group: str
    stop: bool
    members_only: bool
    when: Conditions
    lines: Selector
    effect: Effect
    budget: Budget | None = None
    lifetime_days: int | None = None  # overrides the programme's point lifetime
    holdout_bp: int = 0  # share of members held out as a control group (protocol.rules.holdout)

    @property
    def receipt_level(self) -> bool:
        return self.effect.kind in RECEIPT_KINDS


@dataclass(frozen=True, slots=True)
class ReturnWindow:
    """A return window other than the programme's for some goods, channels or tiers."""

    match: Selector
    channels: frozenset[str]
    tiers: frozenset[str]
    days: int


@dataclass(frozen=True, slots=True)
class Programme:
    units: Mapping[str, Unit]
    default_unit: str
    rounding: str
    return_window_days: int
    lifetime_days: int | None
    lifetime_period: str | None  # month, quarter, year: points last to the end of it
    excluded: Exclusion
    earn_on_redeemed: bool
    return_windows: tuple[ReturnWindow, ...] = ()  # first match wins
    # Stores' wall clock unless a store has its own, and customers' calendar periods;
    # None: read `now` as given (protocol.rules.place)
    time_zone: tzinfo | None = None
    # A return after a line's window (warranty): "take_back" its earned points (into debt
    # if spent) or "keep" them.
    after_return_window: str = "take_back"

    def window_for(self, line: ReceiptLine, prefixes: frozenset[str], channel: str,
                   tier: str | None) -> int:
        for w in self.return_windows:
            if w.channels and channel not in w.channels:
                continue
            if w.tiers and tier not in w.tiers:
                continue
            if w.match.matches(line, prefixes):
                return w.days
        return self.return_window_days


@dataclass(frozen=True, slots=True)
class StorePlace:
    """A store as the rules see it; empty fields: not said (programme zone, any region)."""

    time_zone: tzinfo | None
    region: str
    channel: str


@dataclass(frozen=True, slots=True)
class Tier:
    id: str
    min_spend: int


@dataclass(frozen=True, slots=True)
class Tiers:
    window: str  # calendar_month, rolling
    window_days: int  # rolling only
    levels: tuple[Tier, ...]  # ascending min_spend

    def rank(self, tier: str | None) -> int:
        for i, t in enumerate(self.levels):
            if t.id == tier:
                return i
        return -1


@dataclass(frozen=True, slots=True)
class RedemptionRule:
    match: Selector
    line_share_bp: int


@dataclass(frozen=True, slots=True)
class Redemption:
    unit: str
    receipt_share_bp: int
    rules: tuple[RedemptionRule, ...]  # first match wins; unmatched lines are not payable
    min_balance: int  # the balance a customer needs before spending anything
    min_redeem: int  # the smallest spend allowed

    def line_share_bp(self, line: ReceiptLine, prefixes: frozenset[str]) -> int:
        for rule in self.rules:
            if rule.match.matches(line, prefixes):
                return rule.line_share_bp
        return 0


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    valid_from: datetime | None
    programme: Programme
    tiers: Tiers | None
    redemption: Redemption
    campaigns: tuple[Campaign, ...]  # sorted by (-priority, id): the order of evaluation
    by_id: Mapping[str, int]
    index: CampaignIndex
    stores: Mapping[str, StorePlace] = field(default_factory=dict)
    holdout_salt: str = ""  # the salt of control-group assignment (protocol.rules.holdout)
