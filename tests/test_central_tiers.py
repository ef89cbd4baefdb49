"""Tier windows at the central: up at once, down only when the window turns over."""

from __future__ import annotations

from datetime import UTC, datetime

from central import tiers

MONTHLY = {"window": "calendar_month", "levels": [
    {"id": "base", "min_spend": 0}, {"id": "silver", "min_spend": 500_000},
    {"id": "gold", "min_spend": 2_000_000}]}


def at(day: int, month: int = 3) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


def test_spend_over_the_threshold_upgrades_at_once():
    tier, start, spend = tiers.after_sale(MONTHLY, "base", None, 0, 300_000, at(2))
    assert (tier, start, spend) == ("base", "2026-03-01", 300_000)
    tier, start, spend = tiers.after_sale(MONTHLY, tier, start, spend, 250_000, at(5))
    assert (tier, spend) == ("silver", 550_000)


def test_downgrade_waits_for_the_end_of_the_window():
    # Silver reached in March with 550,000: April begins at silver, with its own spend at 0.
    assert tiers.effective(MONTHLY, "silver", "2026-03-01", 550_000, at(10, 4)) == ("silver", 0)
    # March's spend was below silver: at April's start the tier falls to what it earned.
    assert tiers.effective(MONTHLY, "silver", "2026-03-01", 100_000, at(1, 4)) == ("base", 0)
    # Nothing bought for two months: base.
    assert tiers.effective(MONTHLY, "gold", "2026-03-01", 9_000_000, at(1, 5)) == ("base", 0)
    # Within the window, a gold customer stays gold even after returns bring spend down.
    tier, _, spend = tiers.after_sale(MONTHLY, "gold", "2026-03-01", 2_100_000, -1_000_000,
                                      at(20))
    assert (tier, spend) == ("gold", 1_100_000)


def test_rolling_windows_are_consecutive_blocks_of_days():
    rolling = {"window": "rolling", "window_days": 90, "levels": MONTHLY["levels"]}
    start = tiers.window_start(rolling, at(15))
    assert start is not None
    assert tiers.window_start(rolling, at(16)) == start
    prev = tiers.previous_window_start(rolling, start)
    assert (datetime.fromisoformat(start) - datetime.fromisoformat(prev)).days == 90


def test_without_tiers_nothing_is_tracked():
    assert tiers.after_sale(None, None, None, 0, 100, at(1)) == (None, None, 0)
    assert tiers.effective(None, "vip", None, 0, at(1)) == ("vip", 0)
