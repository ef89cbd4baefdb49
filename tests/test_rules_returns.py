"""Returns: proportional clawback and refund, in steps, and receipt bonuses taken back."""

from __future__ import annotations

import pytest

from protocol.rules import ReturnError, ReturnOutcome, price_return, settle
from tests.test_rules_support import DEFAULT, EXAMPLE, NOON, line, member, receipt, rub


def _three_cups():
    # 3 cups at 333.33 = 999.99; 5% -> 49 points; 100 points spent on it
    r = receipt(line("cup", rub("999.99"), qty=3000, category="home"))
    return settle(DEFAULT, r, member(balance=1000), NOON, redeem=100)


def test_partial_return_takes_back_its_share():
    s = _three_cups()
    assert s.earned == 44  # 5% of 899.99
    out = price_return(DEFAULT, s, {}, {0: 1000})
    assert out.clawback == 14  # floor(44 / 3)
    assert out.refund == 33  # floor(100 / 3)
    assert out.money == 29999  # floor(899.99 / 3)
    # the share of the line's value that points had paid: with money, a third of the net
    assert out.refund_money == 3333 and out.money + out.refund_money == 33332
    assert not out.complete


def test_return_in_steps_restores_exactly():
    s = _three_cups()
    done: dict[int, int] = {}
    claw = refund = money = 0
    for q in (1000, 1000, 1000):
        out = price_return(DEFAULT, s, done, {0: q})
        claw, refund, money = claw + out.clawback, refund + out.refund, money + out.money
        done = dict(out.returned_after)
    assert (claw, refund, money) == (44, 100, rub("899.99"))
    assert out.complete


def test_return_of_part_of_a_weighed_line():
    r = receipt(line("cheese", rub("1234.56"), qty=1733, category="food/cheese"))
    s = settle(DEFAULT, r, member(), NOON)
    assert s.earned == 61
    a = price_return(DEFAULT, s, {}, {0: 500})
    b = price_return(DEFAULT, s, {0: 500}, {0: 1233})
    assert a.clawback + b.clawback == 61 and b.complete


def test_returning_more_than_was_bought_is_refused():
    s = _three_cups()
    with pytest.raises(ReturnError, match="exceed"):
        price_return(DEFAULT, s, {0: 2000}, {0: 1001})


def test_unknown_line_is_refused():
    s = _three_cups()
    with pytest.raises(ReturnError, match="no line 3"):
        price_return(DEFAULT, s, {}, {3: 1000})
    with pytest.raises(ReturnError, match="non-negative"):
        price_return(DEFAULT, s, {}, {0: -5})


def test_receipt_bonus_taken_back_when_the_receipt_falls_below_the_threshold():
    r = receipt(line("tv", rub(4000), category="electro"), line("pan", rub(1500), category="home"))
    s = settle(EXAMPLE, r, member(tier="base"), NOON)
    assert s.earned == 165 + 500
    keep = price_return(EXAMPLE, s, {}, {1: 0})
    assert keep.bonuses_taken == ()
    out = price_return(EXAMPLE, s, {}, {1: 1000})
    assert out.clawback == 45 + 500
    assert [b.campaign for b in out.bonuses_taken] == ["big-basket"]
    # taken back once: the next return does not take it again
    again = price_return(EXAMPLE, s, {1: 1000}, {0: 1000})
    assert again.clawback == 120 and again.bonuses_taken == ()


def test_receipt_bonus_kept_while_the_receipt_still_qualifies():
    r = receipt(line("tv", rub(6000), category="electro"), line("pan", rub(500), category="home"))
    s = settle(EXAMPLE, r, member(tier="base"), NOON)
    out = price_return(EXAMPLE, s, {}, {1: 1000})
    assert out.bonuses_taken == () and out.clawback == 15


def test_buy_x_and_y_bonus_goes_back_with_y():
    r = receipt(line("chips-1", rub(100)), line("juice-1", rub(100)))
    s = settle(EXAMPLE, r, member(tier="base"), NOON)
    out = price_return(EXAMPLE, s, {}, {1: 1000})
    assert [b.campaign for b in out.bonuses_taken] == ["chips-and-beer-free"]


def test_full_return_takes_back_a_welcome_bonus():
    r = receipt(line("pan", rub(1000), category="home"))
    s = settle(EXAMPLE, r, member(tier="base", purchase_count=0), NOON)
    out = price_return(EXAMPLE, s, {}, {0: 1000})
    assert out.clawback == 230 and out.complete


def test_clawback_beyond_the_balance_is_reported_as_shortfall():
    r = receipt(line("tv", rub(10_000), category="electro"))
    s = settle(DEFAULT, r, member(), NOON)
    out = price_return(DEFAULT, s, {}, {0: 1000}, balance=120)
    assert out.clawback == 500 and out.shortfall == 380


def test_refund_offsets_clawback_in_the_shortfall():
    r = receipt(line("tv", rub(1000), category="electro"))
    s = settle(DEFAULT, r, member(balance=500), NOON, redeem=500)
    out = price_return(DEFAULT, s, {}, {0: 1000}, balance=0)
    assert (out.clawback, out.refund, out.shortfall) == (25, 500, 0)


def test_return_outcome_round_trips():
    s = _three_cups()
    out = price_return(DEFAULT, s, {}, {0: 1000})
    assert ReturnOutcome.from_dict(out.to_dict()) == out


def test_return_of_a_discounted_line_refunds_what_was_paid():
    r = receipt(line("old", rub(1000), category="home", flags=("clearance",)),
                line("pan", rub(1000), category="home"))
    s = settle(EXAMPLE, r, member(tier="base"), NOON)
    out = price_return(EXAMPLE, s, {}, {0: 1000})
    assert out.money == rub(700) and out.clawback == 0


def _with_after_window(setting: str):
    from protocol.rules import compile_ruleset, default_ruleset_doc
    doc = default_ruleset_doc()
    doc["programme"]["after_return_window"] = setting
    return compile_ruleset(doc)


def test_goods_back_after_the_window_keep_or_lose_their_points_as_the_programme_says():
    s = _three_cups()
    keep, take = _with_after_window("keep"), _with_after_window("take_back")
    kept = price_return(keep, s, {}, {0: 1000}, past_window={0})
    assert (kept.clawback, kept.refund, kept.money) == (0, 33, 29999)
    assert kept.points_after_window == "kept"
    taken = price_return(take, s, {}, {0: 1000}, past_window={0})
    assert (taken.clawback, taken.points_after_window) == (14, "taken back")
    # Within the window the setting changes nothing, and says nothing.
    inside = price_return(keep, s, {}, {0: 1000})
    assert (inside.clawback, inside.points_after_window) == (14, "")
    assert ReturnOutcome.from_dict(kept.to_dict()) == kept


def test_after_return_window_is_checked_naming_the_setting():
    from protocol.rules import RuleSetError
    with pytest.raises(RuleSetError, match=r"programme\.after_return_window"):
        _with_after_window("forever")
