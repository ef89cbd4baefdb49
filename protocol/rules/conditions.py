"""Whether a campaign's conditions hold for this receipt, and if not, why (for the cashier).

A miss is (code, reason). Codes in QUIET are ordinary non-matches (another store, another
segment, not running now) and stay out of the explanation; the others are near misses worth
telling: "buy 300.00 more", "happy hour starts at 17:00", "gold members only".
"""

from __future__ import annotations

from datetime import date

from protocol.rules.context import Context
from protocol.rules.inputs import Customer
from protocol.rules.model import Campaign, Conditions, Selector
from protocol.rules.money_fmt import fmt_money, fmt_qty

Miss = tuple[str, str]
QUIET = frozenset({"period", "place", "segment", "lines"})
WEEKDAY_NAMES = ("", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def check_customer_and_time(c: Campaign, ctx: Context) -> Miss | None:
    """Everything that does not depend on which lines match; cheapest checks first."""
    w = c.when
    now = ctx.now
    if w.active_from is not None and now < w.active_from:
        return ("period", "not started yet")
    if w.active_to is not None and now >= w.active_to:
        return ("period", "ended")
    r = ctx.receipt
    if w.stores and r.store not in w.stores:
        return ("place", "other stores")
    if w.regions and r.region not in w.regions:
        return ("place", "other regions")
    if w.channels and r.channel not in w.channels:
        return ("place", f"channels {', '.join(sorted(w.channels))} only")
    cust = ctx.customer
    if w.segments and w.segments.isdisjoint(cust.segments):
        return ("segment", "customer not in the segment")
    if w.segments_all and not w.segments_all <= cust.segments:
        return ("segment", "customer not in all segments")
    if w.not_segments and not w.not_segments.isdisjoint(cust.segments):
        return ("segment", "customer's segment is left out")
    if w.weekdays and ctx.weekday not in w.weekdays:
        days = ", ".join(WEEKDAY_NAMES[d] for d in sorted(w.weekdays))
        return ("weekday", f"only on {days}")
    if w.hours and not any(_in_window(ctx.minute, a, b) for a, b in w.hours):
        spans = ", ".join(f"{_hm(a)}–{_hm(b)}" for a, b in w.hours)
        return ("hours", f"only {spans}")
    if c.members_only and not ctx.member:
        return ("member", "members only: no card presented")
    return _check_customer(w, ctx)


def _check_customer(w: Conditions, ctx: Context) -> Miss | None:
    cust = ctx.customer
    if w.tiers and ctx.tier not in w.tiers:
        return ("tier", f"tiers {', '.join(sorted(w.tiers))} only (customer: {ctx.tier or 'none'})")
    if w.offers and not w.offers <= cust.activated_offers:
        return ("offer", "personal offer not activated")
    n = cust.purchase_count + 1  # this receipt's number among the customer's purchases
    if w.first_purchase and n != 1:
        return ("purchase", "first purchase only")
    if w.nth_purchase is not None and n != w.nth_purchase:
        return ("purchase", f"purchase no. {w.nth_purchase} only (this is no. {n})")
    if w.every_nth_purchase is not None and n % w.every_nth_purchase:
        return ("purchase", f"every {w.every_nth_purchase}th purchase (this is no. {n})")
    if w.birthday_within_days is not None:
        near = birthday_near(cust, ctx.today, w.birthday_within_days)
        if near is None:
            return ("birthday", "birthday not known")
        if not near:
            return ("birthday", f"within {w.birthday_within_days} days of the birthday only")
    return None


def check_basket(w: Conditions, ctx: Context, matched: list[int]) -> Miss | None:
    """Basket thresholds over the matched lines, and the 'buy X and Y' requirements."""
    if w.min_amount is not None:
        total = sum(ctx.lines[i].line.amount for i in matched)
        if total < w.min_amount:
            return ("basket", f"basket {fmt_money(total)} below {fmt_money(w.min_amount)}: "
                              f"{fmt_money(w.min_amount - total)} more")
    if w.min_qty is not None:
        qty = sum(ctx.lines[i].line.qty for i in matched)
        if qty < w.min_qty:
            return ("basket", f"quantity {fmt_qty(qty)} below {fmt_qty(w.min_qty)}")
    for sel in w.requires:
        if not any(sel.matches(ctx.lines[i].line, ctx.lines[i].prefixes) for i in ctx.eligible):
            return ("requires", f"needs also {describe(sel)} on the receipt")
    return None


def requirement_lines(w: Conditions, ctx: Context) -> tuple[tuple[int, ...], ...]:
    """For each 'requires' selector, the lines that satisfy it (a return re-checks them)."""
    return tuple(
        tuple(i for i in ctx.eligible if sel.matches(ctx.lines[i].line, ctx.lines[i].prefixes))
        for sel in w.requires
    )


def describe(sel: Selector) -> str:
    parts = []
    if sel.skus:
        parts.append("sku " + "/".join(sorted(sel.skus)))
    if sel.categories:
        parts.append("category " + "/".join(sorted(sel.categories)))
    if sel.brands:
        parts.append("brand " + "/".join(sorted(sel.brands)))
    if sel.flags:
        parts.append("flag " + "/".join(sorted(sel.flags)))
    return " and ".join(parts) or "any goods"


def birthday_near(cust: Customer, today: date, days: int) -> bool | None:
    """Whether `today` is within `days` of the customer's birthday; None if not known. A
    journalled view carries the windows it was within instead of the date."""
    if cust.birthday is not None:
        return days_from_birthday(cust.birthday, today) <= days
    if cust.birthday_within is not None:
        return days in cust.birthday_within
    return None


def days_from_birthday(birthday: date, today: date) -> int:
    """Days between today and the nearest anniversary (29 Feb counts as 28 Feb in other years)."""
    best = 366
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            day = birthday.replace(year=year)
        except ValueError:
            day = date(year, 2, 28)
        best = min(best, abs((day - today).days))
    return best


def _in_window(minute: int, a: int, b: int) -> bool:
    if a < b:
        return a <= minute < b
    return minute >= a or minute < b  # wraps midnight: 22:00–02:00


def _hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
