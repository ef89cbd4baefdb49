"""One evaluation's view of the receipt: what each line is, and who and when is buying.

Built once per call so conditions are cheap checks on precomputed sets. Day-of-week, hours,
birthdays and return windows read the store's wall clock: `now` is any timezone-aware
instant, turned into the store's local time here (protocol.rules.place), so the till and the
central's re-pricing judge one sale alike whatever their system clocks say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from protocol.rules.errors import InputError
from protocol.rules.inputs import ANONYMOUS, Customer, Receipt, ReceiptLine
from protocol.rules.model import RuleSet, category_prefixes
from protocol.rules.place import local_time, placed
from protocol.rules.tiers import resolve_tier

LineKey = tuple[str, str, str, int, int, int, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class LineView:
    index: int
    line: ReceiptLine
    prefixes: frozenset[str]
    excluded: str  # why the line is outside the programme, "" if it is inside
    key: LineKey  # what the line is, for tie-breaks that must not depend on line order
    return_days: int  # the line's return window: its points stay pending that long


@dataclass(frozen=True, slots=True)
class Context:
    ruleset: RuleSet
    receipt: Receipt
    customer: Customer
    now: datetime
    today: date
    minute: int
    weekday: int
    member: bool
    tier: str | None
    lines: tuple[LineView, ...]
    eligible: tuple[int, ...]  # indexes of lines inside the programme
    rank: tuple[int, ...]  # each line's place when lines are sorted by what they are
    return_days: int | None  # the return window when all lines share one (the usual case)


def line_key(line: ReceiptLine) -> LineKey:
    return (line.sku, line.category, line.brand, line.qty, line.price, line.amount,
            tuple(sorted(line.flags)))


def make_context(
    ruleset: RuleSet, receipt: Receipt, customer: Customer | None, now: datetime,
) -> Context:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise InputError("now must be a timezone-aware datetime")
    if not isinstance(receipt, Receipt):
        raise InputError("receipt must be a Receipt")
    now = local_time(ruleset, receipt.store, now)
    receipt = placed(ruleset, receipt)
    customer = customer or ANONYMOUS
    member = customer.is_member
    tier = resolve_tier(ruleset, customer) if member else None
    views = []
    prog = ruleset.programme
    for i, line in enumerate(receipt.lines):
        prefixes = category_prefixes(line.category)
        views.append(LineView(
            i, line, prefixes, prog.excluded.reason(line, prefixes), line_key(line),
            prog.window_for(line, prefixes, receipt.channel, tier)))
    order = sorted(range(len(views)), key=lambda i: (views[i].key, i))
    rank = [0] * len(views)
    for place, i in enumerate(order):
        rank[i] = place
    return Context(
        ruleset=ruleset, receipt=receipt, customer=customer, now=now, today=now.date(),
        minute=now.hour * 60 + now.minute, weekday=now.isoweekday(), member=member,
        tier=tier, lines=tuple(views),
        eligible=tuple(v.index for v in views if not v.excluded), rank=tuple(rank),
        return_days=views[0].return_days
        if views and all(v.return_days == views[0].return_days for v in views) else None,
    )
