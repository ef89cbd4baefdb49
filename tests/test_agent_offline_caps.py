"""Offline caps at the till: which cap binds, and the reason a cashier reads."""

from __future__ import annotations

from agent.offline_caps import Allowance, Caps, Usage, allowance

CAPS = Caps(redeem_per_receipt=500, redeem_per_card_day=800, till_outstanding=2000,
            max_offline_s=24 * 3600)


def test_no_caps_no_limit():
    assert allowance(Caps(), Usage(10_000, 10_000, None)) == Allowance(None, None)


def test_per_receipt_cap_binds_first_on_a_fresh_day():
    a = allowance(CAPS, Usage(card_today=0, outstanding=0, offline_s=60))
    assert a.points == 500 and "per receipt" in (a.reason or "")


def test_what_the_card_spent_today_lowers_the_daily_cap():
    a = allowance(CAPS, Usage(card_today=600, outstanding=0, offline_s=60))
    assert a.points == 200 and "daily limit of 800" in (a.reason or "")
    assert allowance(CAPS, Usage(900, 0, 60)).points == 0


def test_unsynced_redemption_of_the_till_is_capped():
    a = allowance(CAPS, Usage(card_today=0, outstanding=1900, offline_s=60))
    assert a.points == 100 and "before head office confirms" in (a.reason or "")


def test_too_long_offline_refuses_all_redemption():
    a = allowance(CAPS, Usage(0, 0, offline_s=25 * 3600))
    assert a.points == 0 and "not reached head office for more than 24 h" in (a.reason or "")
    assert allowance(CAPS, Usage(0, 0, offline_s=None)).points == 0  # never reached it
