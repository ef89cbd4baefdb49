"""Tiers and qualifying spend as the central keeps them per customer.

A customer row holds the spend of one tier window (`window_start`, `window_spend`) and the
assigned tier. Spend moves the tier up at once; the move down happens only when the window
turns over, to the tier the closed window's spend earned. Windows come from the rule set:
calendar months, or rolling N days, kept here as consecutive N-day windows counted from
1970-01-01 (exact rolling sums would need every receipt's date per customer). Days are
those of the programme's time zone, one boundary for a customer wherever they shop.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

EPOCH = date(1970, 1, 1)


def window_start(tiers: dict[str, Any] | None, at: datetime) -> str | None:
    """The first day of the window containing `at` (in the programme's zone, UTC if it has
    none), or None without tiers."""
    if not tiers:
        return None
    zone = ZoneInfo(tiers["time_zone"]) if tiers.get("time_zone") else UTC
    day = at.astimezone(zone).date()
    if tiers.get("window", "calendar_month") == "calendar_month":
        return day.replace(day=1).isoformat()
    n = int(tiers["window_days"])
    return (EPOCH + timedelta(days=(day - EPOCH).days // n * n)).isoformat()


def previous_window_start(tiers: dict[str, Any], current: str) -> str:
    first = date.fromisoformat(current)
    if tiers.get("window", "calendar_month") == "calendar_month":
        return (first - timedelta(days=1)).replace(day=1).isoformat()
    return (first - timedelta(days=int(tiers["window_days"]))).isoformat()


def tier_for_spend(tiers: dict[str, Any], spend: int) -> str | None:
    best = None
    for level in tiers.get("levels", []):
        if spend >= level["min_spend"]:
            best = level["id"]
    return best


def rank(tiers: dict[str, Any], tier: str | None) -> int:
    ids = [level["id"] for level in tiers.get("levels", [])]
    return ids.index(tier) if tier in ids else -1


def effective(tiers: dict[str, Any] | None, tier: str | None, start: str | None, spend: int,
              now: datetime) -> tuple[str | None, int]:
    """(tier, qualifying spend of the current window) as of `now`, from what the row holds."""
    current = window_start(tiers, now)
    if tiers is None or current is None:
        return tier, 0
    if start == current:
        return tier, spend
    if start == previous_window_start(tiers, current):
        return tier_for_spend(tiers, spend), 0  # the window turned over: spend decides
    return tier_for_spend(tiers, 0), 0  # nothing bought in the last window


def after_sale(tiers: dict[str, Any] | None, tier: str | None, start: str | None, spend: int,
               amount: int, at: datetime) -> tuple[str | None, str | None, int]:
    """(tier, window_start, window_spend) after a sale of `amount` qualifying kopecks at
    `at` (negative for a return)."""
    if tiers is None:
        return tier, start, spend
    tier, spend = effective(tiers, tier, start, spend, at)
    spend = max(0, spend + amount)
    earned = tier_for_spend(tiers, spend)
    if rank(tiers, earned) > rank(tiers, tier):
        tier = earned  # up at once
    return tier, window_start(tiers, at), spend
