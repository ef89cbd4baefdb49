"""How a sale was paid, and how a return gives it back: the split stored with the sale.

The POS sends the split (cash, bank cards with the terminal's reference, points); the sale's
journal entry stores it in its detail, and a return anywhere in the chain refunds from it.
Refunds go back card first, up to what is left of the card part: the card share refunded so
far is a function of the money refunded so far (cumulatively min(card, money)), so returns
in any number of steps give back each part exactly once, and card money never comes back as
cash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol import bounds


class PaymentError(ValueError):
    """A split that cannot be taken, named by the field that is wrong."""


MAX_REF = 64
MAX_CARDS = 20


@dataclass(frozen=True)
class CardPayment:
    amount: int  # kopecks
    rrn: str  # the terminal's retrieval reference number
    approval_code: str
    terminal_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "rrn": self.rrn, "approval_code": self.approval_code,
                "terminal_id": self.terminal_id}


@dataclass(frozen=True)
class Payments:
    """What paid a sale: cash, cards (in the order they were charged) and points."""

    cash: int
    cards: tuple[CardPayment, ...] = ()
    points: int = 0  # points redeemed
    points_money: int = 0  # the kopecks they paid

    @property
    def card(self) -> int:
        return sum(c.amount for c in self.cards)

    @property
    def money(self) -> int:
        return self.cash + self.card

    def to_dict(self) -> dict[str, Any]:
        return {"cash": self.cash, "cards": [c.to_dict() for c in self.cards],
                "points": self.points, "points_money": self.points_money}

    @classmethod
    def from_dict(cls, d: Any, where: str = "payments") -> Payments:
        """Read and check a stored split (a journal entry's detail, the central's answer)."""
        if not isinstance(d, Mapping):
            raise PaymentError(f"{where} must be a map")
        cards = d.get("cards", [])
        if not isinstance(cards, list):
            raise PaymentError(f"{where}.cards must be a list")
        return cls(
            cash=_amount(d, "cash", where),
            cards=tuple(_card(c, f"{where}.cards[{i}]", refs=False)
                        for i, c in enumerate(cards)),
            points=_amount(d, "points", where, default=0),
            points_money=_amount(d, "points_money", where, default=0),
        )


def _amount(d: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PaymentError(f"{where}.{key} must be a non-negative integer of kopecks")
    if value > bounds.MAX_MONEY:
        raise PaymentError(f"{where}.{key} must be at most {bounds.MAX_MONEY} kopecks")
    return value


def _ref(d: Mapping[str, Any], key: str, where: str, required: bool) -> str:
    value = d.get(key, "" if not required else None)
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > MAX_REF:
        raise PaymentError(f"{where}.{key} must be the terminal's {key.replace('_', ' ')}"
                           f" (a non-empty string of at most {MAX_REF} characters)")
    try:
        bounds.text(value, f"{where}.{key}", max_len=MAX_REF)
    except bounds.OutOfBounds as e:  # printed and journalled: valid, printable text
        raise PaymentError(str(e)) from None
    return value.strip()


def _card(d: Any, where: str, refs: bool = True) -> CardPayment:
    """A card payment; `refs=False` for one stored without the terminal's reference (a sale
    the POS recorded as "payment": "card" only)."""
    if not isinstance(d, Mapping):
        raise PaymentError(f"{where} must be an object")
    amount = _amount(d, "amount", where)
    if amount == 0:
        raise PaymentError(f"{where}.amount must be more than 0")
    return CardPayment(amount, _ref(d, "rrn", where, refs),
                       _ref(d, "approval_code", where, refs), _ref(d, "terminal_id", where, refs))


def split_from_pos(raw: Any, to_pay: int, points: int, points_money: int) -> Payments:
    """The POS's `payments` ({"cash": n, "cards": [...]}) for a sale of `to_pay` kopecks.

    Cash may be left out: it is then what the cards leave. Given, cash and cards must add
    up to what is to pay: the split is what the customer paid, change is the POS's business.
    """
    if not isinstance(raw, Mapping):
        raise PaymentError("payments must be an object: {\"cash\": kopecks, \"cards\": [...]}")
    unknown = set(raw) - {"cash", "cards"}
    if unknown:
        raise PaymentError(f"payments has unknown fields {sorted(unknown)}")
    cards = raw.get("cards", [])
    if not isinstance(cards, list):
        raise PaymentError("payments.cards must be a list")
    if len(cards) > MAX_CARDS:
        raise PaymentError(f"payments.cards must hold at most {MAX_CARDS} cards")
    parsed = tuple(_card(c, f"payments.cards[{i}]") for i, c in enumerate(cards))
    card = sum(c.amount for c in parsed)
    if card > to_pay:
        raise PaymentError(f"payments.cards add up to {card}, more than the {to_pay} to pay")
    if raw.get("cash") is None:
        cash = to_pay - card
    else:
        cash = _amount(raw, "cash", "payments")
        if cash + card != to_pay:
            raise PaymentError(f"payments add up to {cash + card}, but {to_pay} is to pay")
    return Payments(cash, parsed, points, points_money)


@dataclass(frozen=True)
class Refund:
    """What one return gives back, part by part."""

    cash: int
    cards: tuple[int, ...]  # per card of the sale, in its order
    points_money: int = 0  # what the points given back had paid

    @property
    def card(self) -> int:
        return sum(self.cards)

    @property
    def money(self) -> int:
        return self.cash + self.card

    def to_dict(self) -> dict[str, Any]:
        return {"cash": self.cash, "cards": list(self.cards), "points_money": self.points_money}


def _cumulative(sale: Payments, money: int) -> tuple[int, tuple[int, ...]]:
    """(cash, per card) of the first `money` kopecks refunded: cards first, in order."""
    left = money
    cards = []
    for c in sale.cards:
        take = min(left, c.amount)
        cards.append(take)
        left -= take
    return left, tuple(cards)


def refund(sale: Payments, money_before: int, money_now: int, points_money: int = 0) -> Refund:
    """The split of a return of `money_now` kopecks after `money_before` already refunded."""
    if money_before < 0 or money_now < 0 or money_before + money_now > sale.money:
        raise PaymentError(f"refunding {money_now} after {money_before} would exceed the"
                           f" {sale.money} paid in money")
    cash_b, cards_b = _cumulative(sale, money_before)
    cash_a, cards_a = _cumulative(sale, money_before + money_now)
    return Refund(cash_a - cash_b, tuple(a - b for a, b in zip(cards_a, cards_b, strict=True)),
                  points_money)
