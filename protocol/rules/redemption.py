"""How many points the customer may spend, and which lines they pay for.

Limits, all in force at once: the goods (only lines the redemption rules cover, each up to
its own share; excluded goods never), the receipt share (e.g. 50 % of the receipt after
discounts), the balance, the minimum balance a customer needs before spending anything, the
till's offline allowance for the card, and a minimum spend. The customer then picks any
amount up to the limit; it is split over lines in proportion to each line's own limit,
which keeps every line within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.rules import model as m
from protocol.rules.arith import allocate
from protocol.rules.context import Context
from protocol.rules.errors import RedemptionError
from protocol.rules.money_fmt import fmt_money, fmt_points


@dataclass(frozen=True, slots=True)
class Caps:
    line_caps: tuple[int, ...]  # points each line may take
    max_points: int
    reason: str


def _pct(bp: int) -> str:
    whole, frac = divmod(bp, 100)
    return f"{whole}%" if not frac else f"{whole}.{frac:02d}".rstrip("0") + "%"


def caps(ctx: Context, nets: Sequence[int]) -> Caps:
    red = ctx.ruleset.redemption
    unit = ctx.ruleset.programme.units[red.unit]
    n = len(nets)
    if not ctx.member:
        return Caps((0,) * n, 0, "no card: points cannot be spent")
    balance = ctx.customer.balance
    pts = lambda x: fmt_points(x, unit.decimals)  # noqa: E731
    if balance <= 0:
        return Caps((0,) * n, 0, "no points to spend")
    if balance < red.min_balance:
        return Caps((0,) * n, 0, f"balance {pts(balance)} below the {pts(red.min_balance)}"
                                 " needed before points can be spent")
    line_caps = [0] * n
    for i in ctx.eligible:
        v = ctx.lines[i]
        share = red.line_share_bp(v.line, v.prefixes)
        if share:
            line_caps[i] = unit.points_for(nets[i] * share // m.BP)
    by_lines = sum(line_caps)
    if by_lines == 0:
        return Caps(tuple(line_caps), 0, "nothing on the receipt can be paid with points")
    receipt_money = sum(nets) * red.receipt_share_bp // m.BP
    limits = [
        (balance, f"the whole balance ({pts(balance)})"),
        (unit.points_for(receipt_money),
         f"{_pct(red.receipt_share_bp)} of the receipt ({fmt_money(receipt_money)})"),
        (by_lines, "what the goods on the receipt allow"),
    ]
    if ctx.customer.redeem_allowance is not None:
        limits.append(
            (max(0, ctx.customer.redeem_allowance), "the till's offline limit for this card"))
    best, why = min(limits, key=lambda x: x[0])
    if best <= 0:
        return Caps(tuple(line_caps), 0, f"nothing: limited by {why}")
    if best < red.min_redeem:
        return Caps(tuple(line_caps), 0, f"only {pts(best)} allowed ({why}), below the minimum"
                                         f" spend of {pts(red.min_redeem)}")
    return Caps(tuple(line_caps), best, f"up to {pts(best)}: limited by {why}")


def split(ctx: Context, c: Caps, redeem: int) -> list[int]:
    """Points per line for a spend of `redeem`; RedemptionError if the rules do not allow it."""
    if isinstance(redeem, bool) or not isinstance(redeem, int):
        raise RedemptionError("points to spend must be an integer")
    if redeem < 0:
        raise RedemptionError("points to spend cannot be negative")
    if redeem > c.max_points:
        raise RedemptionError(f"cannot spend {redeem}: at most {c.max_points} ({c.reason})")
    if 0 < redeem < ctx.ruleset.redemption.min_redeem:
        raise RedemptionError(
            f"cannot spend {redeem}: the minimum spend is {ctx.ruleset.redemption.min_redeem}")
    return allocate(redeem, c.line_caps, ctx.rank)
