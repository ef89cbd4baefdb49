"""Property tests: the guarantees the engine gives on any receipt, customer and rule set."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import date, datetime

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.rules import (
    Customer,
    Pricing,
    Receipt,
    ReceiptLine,
    Settlement,
    compile_ruleset,
    example_ruleset_doc,
    price,
    price_return,
    settle,
)
from protocol.rules.model import BP
from tests.test_rules_support import EXAMPLE, MSK


def _variant() -> dict:
    """The example with points in hundredths, a point worth 0.37, rounding half up, and
    earning on the part paid with points: other integer paths through the same code."""
    doc = example_ruleset_doc()
    doc["programme"]["units"]["points"] = {"decimals": 2, "worth": {"steps": 100, "kopecks": 37}}
    doc["programme"]["rounding"] = "half_up"
    doc["programme"]["earn_on_redeemed"] = True
    doc["redemption"]["min_balance"] = 0
    return doc


VARIANT = compile_ruleset(_variant())
RULESETS = st.sampled_from([EXAMPLE, VARIANT])

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# lines that trigger the example's campaigns, and some that are outside the programme
TEMPLATES = [
    ("shoe", "sports/shoes", "nike", ()),
    ("ball", "sports", "", ()),
    ("latte", "food/coffee", "", ()),
    ("soup", "food/soup", "", ()),
    ("chips-1", "food/snacks", "", ()),
    ("juice-1", "food/drinks", "", ()),
    ("batt-aa", "electro", "", ()),
    ("tv", "electro", "lg", ()),
    ("old", "home", "", ("clearance",)),
    ("gift", "gifts", "", ("members_only",)),
    ("promo", "promo/summer", "", ()),
    ("lipstick", "beauty/cosmetics", "", ()),
    ("chanel", "beauty/perfume", "", ()),
    ("roses", "flowers", "", ()),
    ("cigs", "tobacco", "", ()),
    ("wine", "alcohol/wine", "", ()),
    ("gc", "misc", "", ("gift_card",)),
]
TIMES = [
    datetime(2025, 3, 5, 12, 0, tzinfo=MSK),
    datetime(2025, 3, 5, 18, 15, tzinfo=MSK),  # happy hour
    datetime(2025, 3, 8, 10, 0, tzinfo=MSK),  # 8 March, a Saturday
]


@st.composite
def lines_st(draw: st.DrawFn) -> ReceiptLine:
    sku, cat, brand, flags = draw(st.sampled_from(TEMPLATES))
    qty = draw(st.sampled_from([1000, 2000, 3000, 500, 1250, 1733, 7000]))
    unit_price = draw(st.integers(1, 1_500_000))
    amount = unit_price * qty // 1000
    return ReceiptLine(sku, qty, unit_price, amount, cat, brand, frozenset(flags))


receipts = st.builds(
    lambda lines, channel: Receipt(tuple(lines), "s1", "msk", channel),
    st.lists(lines_st(), min_size=1, max_size=8), st.sampled_from(["till", "app", "web"]),
)


@st.composite
def customers(draw: st.DrawFn) -> Customer | None:
    if draw(st.integers(0, 5)) == 0:
        return None
    return Customer(
        id="c1", balance=draw(st.integers(0, 200_000)),
        tier=draw(st.sampled_from([None, "base", "silver", "gold"])),
        segments=frozenset(draw(st.lists(st.sampled_from(["sports_lovers", "airline", "x"])))),
        birthday=draw(st.sampled_from([None, date(1990, 3, 7), date(1985, 10, 1)])),
        purchase_count=draw(st.integers(0, 3)),
        qualifying_spend=draw(st.integers(0, 3_000_000)),
        activated_offers=frozenset(draw(st.lists(st.sampled_from(["perfume-x3"])))),
        allowances=draw(st.sampled_from([{}, {"app-bonus": 0}, {"app-bonus": 7},
                                         {"coffee-pts": 5, "big-basket": 100}])),
        redeem_allowance=draw(st.sampled_from([None, None, 0, 250])),
    )


def _settle(rs, r, c, now, share: int) -> Settlement:
    p = price(rs, r, c, now)
    return settle(rs, r, c, now, p.max_redeemable * share // 100)


@SETTINGS
@given(RULESETS, receipts, customers(), st.sampled_from(TIMES), st.integers(0, 100))
def test_allocations_add_up_to_the_totals(rs, r, c, now, share):
    s = _settle(rs, r, c, now, share)
    assert sum(ln.redeemed for ln in s.lines) == s.redeemed
    assert sum(ln.redeemed_money for ln in s.lines) == s.redeemed_money
    assert sum(ln.discount for ln in s.lines) == s.discount
    per_campaign: Counter[str] = Counter()
    by_unit: Counter[str] = Counter()
    for ln in s.lines:
        for e in ln.earned:
            per_campaign[e.campaign] += e.points
            by_unit[e.unit] += e.points
        for d in ln.discounts:
            per_campaign[d.campaign] += d.amount
        assert 0 <= ln.redeemed_money <= ln.net <= ln.amount
    for b in s.receipt_bonuses:
        per_campaign[b.campaign] += b.points
        by_unit[b.unit] += b.points
    assert dict(per_campaign) == {k: v for k, v in s.campaign_totals.items() if v}
    assert dict(by_unit) == dict(s.earned_by_unit)
    assert s.earned == s.earned_by_unit.get("points", 0)
    assert sum(lot.points for lot in s.lots) == sum(s.earned_by_unit.values())


@SETTINGS
@given(RULESETS, receipts, customers(), st.sampled_from(TIMES), st.integers(0, 100))
def test_nothing_earned_or_paid_with_points_on_excluded_goods(rs, r, c, now, share):
    s = _settle(rs, r, c, now, share)
    for ln in s.lines:
        if ln.excluded:
            assert ln.earned == () and ln.redeemed == 0 and ln.redeem_cap == 0
            assert ln.discount == 0


@SETTINGS
@given(receipts, customers(), st.sampled_from(TIMES))
def test_redemption_within_cap_balance_and_receipt(r, c, now):
    p = price(EXAMPLE, r, c, now)
    if c is None:
        assert p.max_redeemable == 0
        return
    assert 0 <= p.max_redeemable <= max(c.balance, 0)
    if c.redeem_allowance is not None:
        assert p.max_redeemable <= c.redeem_allowance
    nets = sum(ln.net for ln in p.lines)
    worth = p.max_redeemable * 100  # 1 point = 1.00
    assert worth <= nets * 5000 // BP
    assert p.max_redeemable <= sum(ln.redeem_cap for ln in p.lines)
    s = settle(EXAMPLE, r, c, now, p.max_redeemable)
    for ln in s.lines:
        assert ln.redeemed <= ln.redeem_cap
        assert ln.redeemed_money <= ln.net


@SETTINGS
@given(RULESETS, receipts, customers(), st.sampled_from(TIMES), st.integers(0, 100), st.randoms())
def test_full_return_in_any_steps_restores_exactly(rs, r, c, now, share, rnd):
    s = _settle(rs, r, c, now, share)
    remaining = {ln.index: ln.qty for ln in s.lines}
    done: dict[int, int] = {}
    claw: Counter[str] = Counter()
    refund = money = 0
    while any(remaining.values()):
        step: dict[int, int] = {}
        for i, left in remaining.items():
            if left and rnd.random() < 0.6:
                q = rnd.choice([left, rnd.randint(1, left)])
                step[i] = q
        out = price_return(rs, s, done, step)
        for i, q in step.items():
            remaining[i] -= q
        done = dict(out.returned_after)
        claw.update(out.clawback_by_unit)
        refund += out.refund
        money += out.money
        # never more than the receipt gave, at any step
        assert all(claw[u] <= s.earned_by_unit.get(u, 0) for u in claw)
        assert refund <= s.redeemed and money <= s.paid_money
    assert out.complete if s.lines else True
    assert {u: v for u, v in claw.items() if v} == dict(s.earned_by_unit)
    assert refund == s.redeemed
    assert money == s.paid_money


@SETTINGS
@given(RULESETS, receipts, customers(), st.sampled_from(TIMES), st.integers(0, 100), st.randoms())
def test_result_does_not_depend_on_the_order_of_lines(rs, r, c, now, share, rnd):
    s1 = _settle(rs, r, c, now, share)
    order = list(range(len(r.lines)))
    rnd.shuffle(order)
    r2 = Receipt(tuple(r.lines[i] for i in order), r.store, r.region, r.channel)
    s2 = _settle(rs, r2, c, now, share)
    for attr in ("earned", "redeemed", "redeemed_money", "discount", "qualifying_amount"):
        assert getattr(s1, attr) == getattr(s2, attr)
    assert s1.earned_by_unit == s2.earned_by_unit
    assert s1.campaign_totals == s2.campaign_totals

    def outcome(s: Settlement, rec: Receipt) -> Counter:
        return Counter(
            (rec.lines[ln.index], tuple(sorted((e.campaign, e.points) for e in ln.earned)),
             ln.redeemed, tuple(sorted((d.campaign, d.amount) for d in ln.discounts)))
            for ln in s.lines
        )

    assert outcome(s1, r) == outcome(s2, r2)


@settings(max_examples=25, deadline=None)
@given(receipts, customers(), st.sampled_from(TIMES), st.integers(0, 100), st.randoms())
def test_result_does_not_depend_on_the_order_of_campaigns(r, c, now, share, rnd):
    doc = example_ruleset_doc()
    shuffled = copy.deepcopy(doc)
    rnd.shuffle(shuffled["campaigns"])
    a = _settle(compile_ruleset(doc), r, c, now, share)
    b = _settle(compile_ruleset(shuffled), r, c, now, share)
    assert a.to_dict() == b.to_dict()


@SETTINGS
@given(RULESETS, receipts, customers(), st.sampled_from(TIMES), st.integers(0, 100))
def test_evaluation_is_deterministic_and_round_trips(rs, r, c, now, share):
    p1, p2 = price(rs, r, c, now), price(rs, r, c, now)
    assert p1 == p2
    assert Pricing.from_dict(p1.to_dict()) == p1
    s = _settle(rs, r, c, now, share)
    assert s == _settle(rs, r, c, now, share)
    d = s.to_dict()
    assert Settlement.from_dict(d) == s
    assert Settlement.from_dict(msgpack.unpackb(msgpack.packb(d), strict_map_key=False)) == s
    assert Settlement.from_dict(json.loads(json.dumps(d))) == s


@SETTINGS
@given(receipts, customers(), st.sampled_from(TIMES))
def test_spending_points_never_raises_what_is_earned(r, c, now):
    p = price(EXAMPLE, r, c, now)
    s0 = settle(EXAMPLE, r, c, now, 0)
    s1 = settle(EXAMPLE, r, c, now, p.max_redeemable)
    assert s0.earned == p.earned
    assert s1.earned <= s0.earned
    assert s0.discount == s1.discount == p.discount
