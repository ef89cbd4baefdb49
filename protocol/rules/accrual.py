"""Points a campaign gives on the lines it covers, and discounts it takes off them.

Each campaign's points are worked out exactly over all its lines together and rounded once
(the programme's rounding, down by default), then split over the lines in proportion to what
each contributed, so per-line figures add up to the total and rounding never costs the
customer a point per line. A till's remaining allowance for the campaign caps the total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.rules import model as m
from protocol.rules.arith import allocate, div_round
from protocol.rules.context import Context


@dataclass(frozen=True, slots=True)
class Grant:
    """What one campaign earned: its total and its split over lines (receipt bonuses: none)."""

    campaign: m.Campaign
    total: int
    per_line: Mapping[int, int]


def campaign_points(
    c: m.Campaign, ctx: Context, lines: Sequence[int], base: Sequence[int],
    ref: Mapping[int, int] | None = None, allowance: int | None = None,
) -> Grant:
    """Points of `c` over `lines`, whose money base (kopecks) is `base[i]`.

    `ref` is, for a multiplier, the points the multiplied campaign gave on each line.
    """
    e = c.effect
    prog = ctx.ruleset.programme
    kind = e.kind
    if kind == m.PER_RECEIPT:
        total = e.points if allowance is None else min(e.points, allowance)
        return Grant(c, total, {})
    if kind == m.GRANT_OFFER:
        return Grant(c, 0, {})
    unit = prog.units[e.unit]
    if kind == m.PERCENT:
        bp = e.bp_for(ctx.tier)
        weights = [base[i] * bp * unit.steps for i in lines]
        total = div_round(sum(weights), m.BP * unit.kopecks, prog.rounding)
    elif kind == m.PER_AMOUNT:
        # "K points for each full X spent": the full Xs are counted over all covered lines
        weights = [base[i] for i in lines]
        total = e.points * (sum(weights) // e.per)
    elif kind == m.PER_UNIT:
        weights = [ctx.lines[i].line.qty * e.points for i in lines]
        total = div_round(sum(weights), 1000, prog.rounding)
    else:  # MULTIPLIER: (factor - 1) times the points the multiplied campaign gave
        r = ref or {}
        weights = [r.get(i, 0) * (e.factor - 100) for i in lines]
        total = div_round(sum(weights), 100, prog.rounding)
    if allowance is not None:
        total = min(total, allowance)
    rank = ctx.rank
    parts = allocate(total, weights, [rank[i] for i in lines])
    return Grant(c, total, {i: p for i, p in zip(lines, parts, strict=True) if p})


def discount_parts(
    c: m.Campaign, ctx: Context, lines: Sequence[int], nets: Sequence[int],
    allowance: int | None,
) -> list[int]:
    """Kopecks `c` takes off each of `lines`, never more than what is left of a line."""
    e = c.effect
    views = ctx.lines
    ranks = [ctx.rank[i] for i in lines]
    if e.kind in (m.DISCOUNT_PERCENT, m.DISCOUNT_PER_UNIT):
        if e.kind == m.DISCOUNT_PERCENT:
            parts = [nets[i] * e.bp // m.BP for i in lines]  # down: never rounded up
        else:  # so much off each unit (a weighed line: per kilogram), never below zero
            parts = [min(nets[i], e.amount * views[i].line.qty // 1000) for i in lines]
        if allowance is not None and sum(parts) > allowance:
            parts = allocate(allowance, parts, ranks)
        return parts
    weights = [nets[i] for i in lines]
    total = min(e.amount, sum(weights))
    if allowance is not None:
        total = min(total, allowance)
    return allocate(total, weights, ranks)
