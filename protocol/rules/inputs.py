"""What the till hands the engine: the receipt draft and what it knows of the customer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from protocol.rules.arith import is_int
from protocol.rules.errors import InputError


def _need_int(name: str, value: object, minimum: int | None = 0) -> None:
    if not is_int(value):
        raise InputError(f"{name} must be an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise InputError(f"{name} must be at least {minimum}, got {value}")


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """One receipt line. qty in thousandths, price per unit and amount (line total as
    charged before loyalty) in kopecks; category is hierarchical ("sports/shoes")."""

    sku: str
    qty: int
    price: int
    amount: int
    category: str = ""
    brand: str = ""
    flags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.sku, str):
            raise InputError("line sku must be a string")
        _need_int("line qty", self.qty, 1)
        _need_int("line price", self.price)
        _need_int("line amount", self.amount)
        if not isinstance(self.flags, frozenset):
            object.__setattr__(self, "flags", frozenset(self.flags))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku, "qty": self.qty, "price": self.price, "amount": self.amount,
            "category": self.category, "brand": self.brand, "flags": sorted(self.flags),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReceiptLine:
        return cls(
            sku=d["sku"], qty=d["qty"], price=d["price"], amount=d["amount"],
            category=d.get("category", ""), brand=d.get("brand", ""),
            flags=frozenset(d.get("flags", ())),
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    lines: tuple[ReceiptLine, ...]
    store: str
    region: str = ""
    channel: str = "till"  # till, web, app

    def __post_init__(self) -> None:
        if not isinstance(self.lines, tuple):
            object.__setattr__(self, "lines", tuple(self.lines))

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": [ln.to_dict() for ln in self.lines], "store": self.store,
            "region": self.region, "channel": self.channel,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Receipt:
        return cls(
            lines=tuple(ReceiptLine.from_dict(x) for x in d["lines"]), store=d["store"],
            region=d.get("region", ""), channel=d.get("channel", "till"),
        )


@dataclass(frozen=True, slots=True)
class Customer:
    """What the till knows of the customer. id None is a non-member: no points, but the
    receipt still gets discounts that do not require membership.

    balance is in the redemption unit; qualifying_spend is spend in the current tier window
    (kopecks); allowances maps a campaign id to what is left of its budget that this till may
    still grant (points, or kopecks for discounts); a campaign without an entry is not limited
    locally. redeem_allowance is the till's offline cap on what this card may still spend.
    """

    id: str | None = None
    balance: int = 0
    tier: str | None = None
    segments: frozenset[str] = frozenset()
    birthday: date | None = None
    purchase_count: int = 0
    qualifying_spend: int = 0
    activated_offers: frozenset[str] = frozenset()
    allowances: Mapping[str, int] = field(default_factory=dict)
    redeem_allowance: int | None = None
    # Stands in for the birthday in a journalled view (protocol.rules.birthdays): the
    # windows (days either side) it fell within on the sale's day. None: not given.
    birthday_within: frozenset[int] | None = None

    def __post_init__(self) -> None:
        _need_int("customer balance", self.balance, None)
        _need_int("customer purchase_count", self.purchase_count)
        _need_int("customer qualifying_spend", self.qualifying_spend)
        for name in ("segments", "activated_offers"):
            value = getattr(self, name)
            if not isinstance(value, frozenset):
                object.__setattr__(self, name, frozenset(value))

    @property
    def is_member(self) -> bool:
        return self.id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "balance": self.balance, "tier": self.tier,
            "segments": sorted(self.segments),
            "birthday": month_day(self.birthday) if self.birthday else None,
            "purchase_count": self.purchase_count, "qualifying_spend": self.qualifying_spend,
            "activated_offers": sorted(self.activated_offers),
            "allowances": dict(self.allowances), "redeem_allowance": self.redeem_allowance,
            "birthday_within": (None if self.birthday_within is None
                                else sorted(self.birthday_within)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Customer:
        within = d.get("birthday_within")
        return cls(
            id=d.get("id"), balance=d.get("balance", 0), tier=d.get("tier"),
            segments=frozenset(d.get("segments", ())),
            birthday=birthday_from_wire(d.get("birthday")),
            birthday_within=None if within is None else frozenset(within),
            purchase_count=d.get("purchase_count", 0),
            qualifying_spend=d.get("qualifying_spend", 0),
            activated_offers=frozenset(d.get("activated_offers", ())),
            allowances=dict(d.get("allowances", {})),
            redeem_allowance=d.get("redeem_allowance"),
        )


ANONYMOUS = Customer()

# The year a birthday known only by month and day is given: a leap year, so that 29
# February is a date. The rules read month and day only (conditions.days_from_birthday).
BIRTHDAY_YEAR = 2000


def month_day(day: date) -> str:
    """A birthday as tills receive and keep it: "MM-DD", no year."""
    return f"{day.month:02d}-{day.day:02d}"


def birthday_from_wire(value: object) -> date | None:
    """"MM-DD" (or a full date, as older centrals sent it: its year is dropped)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) not in (5, 10):
        raise InputError("birthday must be MM-DD")
    try:
        day = date.fromisoformat(value if len(value) == 10 else f"{BIRTHDAY_YEAR}-{value}")
    except ValueError:
        raise InputError("birthday must be MM-DD") from None
    return day.replace(year=BIRTHDAY_YEAR)
