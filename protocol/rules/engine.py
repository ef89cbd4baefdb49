"""price() and settle(): the two calls a till makes for a receipt.

price() answers while the receipt is a draft: discounts, points to earn if nothing is spent,
the most points that may be spent and why. settle() is the final word once the customer has
chosen how many points to spend: the points paid are split over lines, and points are earned
on what was paid with money (unless the programme sets earn_on_redeemed), so a return later
knows exactly what each line earned and cost in points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.rules import model as m
from protocol.rules.accrual import Grant, campaign_points
from protocol.rules.context import Context, make_context
from protocol.rules.explain import ExplainEntry, Explanation
from protocol.rules.inputs import Customer, Receipt
from protocol.rules.lots import activation, expiry
from protocol.rules.money_fmt import fmt_money, fmt_points
from protocol.rules.redemption import Caps, caps, split
from protocol.rules.results import (
    Earning,
    LineOutcome,
    Lot,
    OfferGrant,
    Pricing,
    ReceiptBonus,
    Settlement,
)
from protocol.rules.selection import Selection, select
from protocol.rules.tiers import tier_for_spend


@dataclass(frozen=True, slots=True)
class _Outcome:
    lines: tuple[LineOutcome, ...]
    bonuses: tuple[ReceiptBonus, ...]
    lots: tuple[Lot, ...]
    earned_by_unit: dict[str, int]
    offers: tuple[OfferGrant, ...]
    campaign_totals: dict[str, int]
    entries: tuple[ExplainEntry, ...]
    redeemed_money: int
    qualifying: int


def price(ruleset: m.RuleSet, receipt: Receipt, customer: Customer | None,
          now: datetime) -> Pricing:
    """Price a draft receipt for `customer` (None or an id-less Customer: not a member)."""
    ctx = make_context(ruleset, receipt, customer, now)
    sel = select(ctx)
    rc = caps(ctx, sel.nets)
    out = _outcome(ctx, sel, rc, [0] * len(ctx.lines))
    prog = ruleset.programme
    return Pricing(
        ruleset_version=ruleset.version, unit=prog.default_unit,
        redeem_unit=ruleset.redemption.unit, lines=out.lines, receipt_bonuses=out.bonuses,
        earned=out.earned_by_unit.get(prog.default_unit, 0), earned_by_unit=out.earned_by_unit,
        discount=sum(x.discount for x in out.lines),
        total_amount=sum(x.amount for x in out.lines), max_redeemable=rc.max_points,
        redeem_reason=rc.reason, tier=ctx.tier, offers_granted=out.offers, lots=out.lots,
        explanation=_explanation(ctx, sel, out, rc),
    )


def settle(ruleset: m.RuleSet, receipt: Receipt, customer: Customer | None, now: datetime,
           redeem: int = 0) -> Settlement:
    """The final outcome when the customer spends `redeem` points (0..max_redeemable)."""
    ctx = make_context(ruleset, receipt, customer, now)
    sel = select(ctx)
    rc = caps(ctx, sel.nets)
    parts = split(ctx, rc, redeem)
    out = _outcome(ctx, sel, rc, parts)
    prog = ruleset.programme
    used = sorted({o for ch in sel.chosen for o in ch.campaign.when.offers})
    tier_after = ctx.tier
    if ctx.member and ruleset.tiers is not None:
        reached = tier_for_spend(ruleset, ctx.customer.qualifying_spend + out.qualifying)
        if ruleset.tiers.rank(reached) > ruleset.tiers.rank(tier_after):
            tier_after = reached  # upgrade at once; downgrades wait for the window's end
    return Settlement(
        ruleset_version=ruleset.version, at=now, customer_id=ctx.customer.id,
        unit=prog.default_unit, redeem_unit=ruleset.redemption.unit, lines=out.lines,
        receipt_bonuses=out.bonuses, lots=out.lots,
        earned=out.earned_by_unit.get(prog.default_unit, 0), earned_by_unit=out.earned_by_unit,
        redeemed=redeem, redeemed_money=out.redeemed_money,
        discount=sum(x.discount for x in out.lines),
        total_amount=sum(x.amount for x in out.lines), tier=ctx.tier, tier_after=tier_after,
        qualifying_amount=out.qualifying, offers_granted=out.offers, offers_used=tuple(used),
        campaign_totals=out.campaign_totals, explanation=_explanation(ctx, sel, out, rc),
        held_out=sel.held_out,
    )


def _outcome(ctx: Context, sel: Selection, rc: Caps, redeemed: Sequence[int]) -> _Outcome:
    rs = ctx.ruleset
    prog = rs.programme
    views = ctx.lines
    runit = prog.units[rs.redemption.unit]
    money = [runit.money(p) for p in redeemed]
    base = [n if prog.earn_on_redeemed else n - r for n, r in zip(sel.nets, money, strict=True)]
    grants: dict[str, Grant] = {}
    # multipliers last: they multiply what another campaign gave
    for ch in sorted(sel.chosen, key=lambda ch: ch.campaign.effect.kind == m.MULTIPLIER):
        c = ch.campaign
        if c.effect.kind not in m.ACCRUAL_KINDS:
            continue
        ref = grants[c.effect.of].per_line if c.effect.of in grants else {}
        grants[c.id] = campaign_points(c, ctx, ch.lines, base, ref, ch.allowance)
    earned: list[list[Earning]] = [[] for _ in ctx.lines]
    bonuses: list[ReceiptBonus] = []
    by_unit: dict[str, int] = {}
    lot_points: dict[tuple[str, int, int | None], int] = {}  # (unit, return days, lifetime)
    totals: dict[str, int] = {}
    offers: list[OfferGrant] = []
    entries: list[ExplainEntry] = []
    for ch in sel.chosen:  # evaluation order, so the output order is the rule set's
        c = ch.campaign
        e = c.effect
        if e.kind in m.DISCOUNT_KINDS:
            d = sel.discount_totals[c.id]
            totals[c.id] = d
            entries.append(ExplainEntry(c.id, c.name, True, f"discount {fmt_money(d)}"
                                        + _capped(ch.allowance, d), discount=d))
            continue
        if e.kind == m.GRANT_OFFER:
            offers.append(OfferGrant(e.offer, c.id, ctx.now + timedelta(days=e.valid_days)))
            entries.append(
                ExplainEntry(c.id, c.name, True, f"offer {e.offer} for the next purchase"))
            continue
        g = grants[c.id]
        unit = prog.units[e.unit]
        if g.total <= 0:
            why = (f"nothing to multiply: {e.of} earned nothing here" if e.kind == m.MULTIPLIER
                   else "nothing earned on these amounts")
            entries.append(ExplainEntry(c.id, c.name, False, why, "zero", unit=e.unit))
            continue
        totals[c.id] = g.total
        by_unit[e.unit] = by_unit.get(e.unit, 0) + g.total
        if e.kind == m.PER_RECEIPT:
            bonuses.append(ReceiptBonus(c.id, e.unit, g.total, ch.lines, c.when.min_amount,
                                        c.when.min_qty, ch.requires))
            # pending until every line it rests on is past its return window
            key = (e.unit, max(views[i].return_days for i in ch.lines), c.lifetime_days)
            lot_points[key] = lot_points.get(key, 0) + g.total
        else:
            for i, p in g.per_line.items():
                earned[i].append(Earning(c.id, e.unit, p))
            if ctx.return_days is not None:
                key = (e.unit, ctx.return_days, c.lifetime_days)
                lot_points[key] = lot_points.get(key, 0) + g.total
            else:
                for i, p in g.per_line.items():
                    key = (e.unit, views[i].return_days, c.lifetime_days)
                    lot_points[key] = lot_points.get(key, 0) + p
        entries.append(ExplainEntry(
            c.id, c.name, True, f"+{fmt_points(g.total, unit.decimals)} {e.unit}"
            + _capped(ch.allowance, g.total), points=g.total, unit=e.unit))
    lines = tuple(
        LineOutcome(
            index=v.index, sku=v.line.sku, qty=v.line.qty, amount=v.line.amount,
            excluded=v.excluded, discounts=sel.discounts[v.index],
            earned=tuple(earned[v.index]), redeemed=redeemed[v.index],
            redeemed_money=money[v.index], redeem_cap=rc.line_caps[v.index],
            return_days=v.return_days,
        )
        for v in ctx.lines
    )
    return _Outcome(
        lines=lines, bonuses=tuple(bonuses), lots=_lots(ctx, lot_points),
        earned_by_unit=dict(sorted(by_unit.items())), offers=tuple(offers),
        campaign_totals=totals, entries=tuple(entries), redeemed_money=sum(money),
        qualifying=sum(sel.nets[i] - money[i] for i in ctx.eligible) if ctx.member else 0,
    )


def _capped(allowance: int | None, granted: int) -> str:
    return " (budget allowance reached)" if allowance is not None and granted >= allowance else ""


def _lots(ctx: Context, lot_points: dict[tuple[str, int, int | None], int]) -> tuple[Lot, ...]:
    prog = ctx.ruleset.programme
    merged: dict[tuple[str, datetime, datetime | None], int] = {}
    for (unit, return_days, lifetime), pts in lot_points.items():
        act = activation(ctx.now, return_days)
        k = (unit, act, expiry(prog, act, lifetime, prog.time_zone))
        merged[k] = merged.get(k, 0) + pts
    far = datetime.max.replace(tzinfo=ctx.now.tzinfo)
    return tuple(
        Lot(unit, pts, act, exp)
        for (unit, act, exp), pts in sorted(
            merged.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or far))
    )


def _explanation(ctx: Context, sel: Selection, out: _Outcome, rc: Caps) -> Explanation:
    excluded = tuple((v.index, v.excluded) for v in ctx.lines if v.excluded)
    return Explanation(entries=out.entries + sel.misses, excluded=excluded, redeem=rc.reason)
