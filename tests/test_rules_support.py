"""Builders shared by the rules-engine tests (no tests of its own)."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone
from typing import Any

from protocol.rules import (
    Customer,
    Receipt,
    ReceiptLine,
    RuleSet,
    compile_ruleset,
    default_ruleset_doc,
    example_ruleset_doc,
)

MSK = timezone(timedelta(hours=3))
# Wednesday 5 March 2025, 12:00 Moscow time
NOON = datetime(2025, 3, 5, 12, 0, tzinfo=MSK)

DEFAULT: RuleSet = compile_ruleset(default_ruleset_doc())
EXAMPLE: RuleSet = compile_ruleset(example_ruleset_doc())


def rub(roubles: int | str) -> int:
    """Roubles (as an int or "12.34") to kopecks."""
    s = str(roubles)
    whole, _, frac = s.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0") or 0)


def line(sku: str, amount: int, qty: int = 1000, category: str = "food", brand: str = "",
         flags: tuple[str, ...] = ()) -> ReceiptLine:
    price = amount * 1000 // qty
    return ReceiptLine(sku, qty, price, amount, category, brand, frozenset(flags))


def receipt(*lines: ReceiptLine, store: str = "s1", region: str = "msk",
            channel: str = "till") -> Receipt:
    return Receipt(tuple(lines), store, region, channel)


def member(balance: int = 0, **kw: Any) -> Customer:
    kw.setdefault("purchase_count", 5)
    return Customer(id=kw.pop("id", "cust-1"), balance=balance, **kw)


def doc_with(*campaigns: dict[str, Any], base: dict[str, Any] | None = None,
             **programme: Any) -> dict[str, Any]:
    """The default document with extra campaigns and programme settings."""
    doc = copy.deepcopy(base or default_ruleset_doc())
    doc["campaigns"].extend(copy.deepcopy(list(campaigns)))
    doc["programme"].update(programme)
    return doc


def ruleset_with(*campaigns: dict[str, Any], **programme: Any) -> RuleSet:
    return compile_ruleset(doc_with(*campaigns, **programme))


BIRTHDAY = date(1990, 3, 7)
