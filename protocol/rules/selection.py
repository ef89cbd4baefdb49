"""Which campaigns apply to a receipt: matching, exclusivity groups, stop flags, budgets.

1. The index gives the candidates; each is checked (time, place, customer, lines, basket,
   budget). Near misses go to the explanation.
2. Exclusivity: within a group only the campaign worth most to the customer on this receipt
   applies (value in kopecks: a discount, or points at their money worth; ties go to the
   higher priority). Groups stack with each other and with ungrouped campaigns.
3. In order of priority (then id), campaigns apply. Discounts come off at once, so a later
   discount works on what is left. A campaign with `stop` closes its lines to every
   campaign after it (a receipt-level one closes the whole receipt).

Which campaigns apply does not depend on the redemption: points are worked out afterwards on
the amounts paid with money (accrual.py), so pricing and settling choose the same campaigns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from protocol.rules import model as m
from protocol.rules.accrual import campaign_points, discount_parts
from protocol.rules.conditions import (
    QUIET,
    Miss,
    check_basket,
    check_customer_and_time,
    requirement_lines,
)
from protocol.rules.context import Context
from protocol.rules.explain import ExplainEntry
from protocol.rules.holdout import held_out
from protocol.rules.results import Discount


@dataclass(frozen=True, slots=True)
class Chosen:
    campaign: m.Campaign
    lines: tuple[int, ...]  # lines it acts on (for a receipt-level campaign: its basket)
    requires: tuple[tuple[int, ...], ...]
    allowance: int | None


@dataclass(frozen=True, slots=True)
class Selection:
    chosen: tuple[Chosen, ...]  # in order of evaluation
    discounts: tuple[tuple[Discount, ...], ...]  # per line
    nets: tuple[int, ...]  # per line, after discounts
    misses: tuple[ExplainEntry, ...]
    discount_totals: dict[str, int]  # campaign id -> kopecks
    # campaigns that would have applied but hold this customer out (their control group)
    held_out: tuple[str, ...] = ()


def _miss(c: m.Campaign, miss: Miss) -> ExplainEntry:
    return ExplainEntry(c.id, c.name, False, miss[1], miss[0])


def select(ctx: Context) -> Selection:
    rs = ctx.ruleset
    views = ctx.lines
    cust = ctx.customer
    # all lines, excluded ones too, so a campaign on excluded goods can say why it missed
    cands = rs.index.candidates(
        ((v.index, v.line.sku, v.prefixes, v.line.brand) for v in views),
        cust.activated_offers, cust.segments, ctx.receipt.store,
    )
    misses: list[ExplainEntry] = []
    passing: list[Chosen] = []
    held: list[Chosen] = []
    for pos, trigger in cands:
        c = rs.campaigns[pos]
        miss = check_customer_and_time(c, ctx)
        if miss is not None:
            if miss[0] not in QUIET:
                misses.append(_miss(c, miss))
            continue
        sel = c.lines
        scan = ctx.eligible if trigger is None else trigger
        if sel.is_any:
            matched = list(scan)
        else:
            matched = [
                i for i in scan
                if not views[i].excluded and sel.matches(views[i].line, views[i].prefixes)
            ]
        if not matched:
            scan = range(len(views)) if trigger is None else trigger
            out = [views[i] for i in scan
                   if views[i].excluded and sel.matches(views[i].line, views[i].prefixes)]
            if out:
                why = f"goods outside the programme ({out[0].excluded})"
                misses.append(_miss(c, ("excluded", why)))
            continue
        miss = check_basket(c.when, ctx, matched)
        if miss is not None:
            misses.append(_miss(c, miss))
            continue
        allowance = cust.allowances.get(c.id)
        if allowance is not None and allowance <= 0:
            misses.append(_miss(c, ("budget", "campaign budget used up on this till")))
            continue
        reqs = requirement_lines(c.when, ctx) if c.when.requires else ()
        ch = Chosen(c, tuple(matched), reqs, allowance)
        # After every condition, so the control group is those it would have applied to:
        # their receipts compare with the treated ones (central.campaign_roi). Not in the
        # explanation: the cashier has nothing to tell the customer.
        if c.holdout_bp and ctx.member and held_out(
                rs.holdout_salt, c.id, cust.id, c.holdout_bp):
            held.append(ch)
        passing.append(ch)
    if not held:
        return _apply(ctx, passing, _group_losers(ctx, passing), misses)
    # Held out: recorded only where the campaign would have applied, exclusive groups and
    # stops included (what a treated receipt must pass too), judged without the holdout.
    unheld = _apply(ctx, passing, _group_losers(ctx, passing), [])
    would = {x.campaign.id for x in unheld.chosen}
    held_ids = {ch.campaign.id for ch in held}
    kept = [ch for ch in passing if ch.campaign.id not in held_ids]
    sel = _apply(ctx, kept, _group_losers(ctx, kept), misses)
    return replace(sel, held_out=tuple(ch.campaign.id for ch in held
                                       if ch.campaign.id in would))


def _group_losers(ctx: Context, passing: list[Chosen]) -> dict[str, m.Campaign]:
    """Campaign id -> the campaign of its group that beat it."""
    groups: dict[str, list[Chosen]] = {}
    for ch in passing:
        if ch.campaign.group:
            groups.setdefault(ch.campaign.group, []).append(ch)
    losers: dict[str, m.Campaign] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        # members are in evaluation order, so on equal value the higher priority wins
        ranked = sorted(enumerate(members), key=lambda im: (-estimate(ctx, im[1]), im[0]))
        best = ranked[0][1].campaign
        for _, ch in ranked[1:]:
            losers[ch.campaign.id] = best
    return losers


def estimate(ctx: Context, ch: Chosen) -> int:
    """What a campaign is worth to the customer on this receipt, in kopecks."""
    c = ch.campaign
    e = c.effect
    amounts = [v.line.amount for v in ctx.lines]
    if e.kind in m.DISCOUNT_KINDS:
        return sum(discount_parts(c, ctx, ch.lines, amounts, ch.allowance))
    if e.kind == m.GRANT_OFFER:
        return 0
    ref = None
    if e.kind == m.MULTIPLIER:
        rs = ctx.ruleset
        base = rs.campaigns[rs.by_id[e.of]]
        on = [i for i in ch.lines if base.lines.matches(ctx.lines[i].line, ctx.lines[i].prefixes)]
        ref = campaign_points(base, ctx, on, amounts).per_line
    g = campaign_points(c, ctx, ch.lines, amounts, ref, ch.allowance)
    return ctx.ruleset.programme.units[e.unit].money(g.total)


def _apply(
    ctx: Context, passing: list[Chosen], losers: dict[str, m.Campaign],
    misses: list[ExplainEntry],
) -> Selection:
    nets = [v.line.amount for v in ctx.lines]
    discounts: list[list[Discount]] = [[] for _ in ctx.lines]
    stopped: dict[int, str] = {}  # line -> name of the campaign that closed it
    receipt_stop = ""
    chosen: list[Chosen] = []
    totals: dict[str, int] = {}
    for ch in passing:
        c = ch.campaign
        if c.id in losers:
            best = losers[c.id]
            misses.append(_miss(c, ("group", f"exclusive group {c.group}: {best.name} gives more")))
            continue
        if receipt_stop:
            misses.append(_miss(c, ("stop", f"no further promotions after {receipt_stop}")))
            continue
        live = tuple(i for i in ch.lines if i not in stopped) if stopped else ch.lines
        if not live:
            misses.append(_miss(c, ("stop", f"no further promotions after {stopped[ch.lines[0]]}")))
            continue
        if c.effect.kind in m.DISCOUNT_KINDS:
            parts = discount_parts(c, ctx, live, nets, ch.allowance)
            if not any(parts):
                misses.append(_miss(c, ("discount", "nothing left to discount")))
                continue
            for i, p in zip(live, parts, strict=True):
                if p:
                    nets[i] -= p
                    discounts[i].append(Discount(c.id, p))
            totals[c.id] = sum(parts)
        if not c.receipt_level:
            ch = Chosen(c, live, ch.requires, ch.allowance)
        chosen.append(ch)
        if c.stop:
            if c.receipt_level:
                receipt_stop = c.name
            else:
                for i in live:
                    stopped.setdefault(i, c.name)
    return Selection(
        chosen=tuple(chosen), discounts=tuple(tuple(d) for d in discounts), nets=tuple(nets),
        misses=tuple(misses), discount_totals=totals,
    )
