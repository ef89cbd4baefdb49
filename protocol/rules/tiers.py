"""Tiers: which level a customer earns at, and when the spend window turns over.

The central assigns each customer's tier at the end of every window from that window's
spend (the downgrade happens only then) and sends it with the running qualifying spend of
the current window. The engine takes the higher of the assigned tier and the tier the running
spend already reaches, so an upgrade takes effect at once, from the next purchase on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from protocol.rules.inputs import Customer
from protocol.rules.model import RuleSet


def tier_for_spend(ruleset: RuleSet, spend: int) -> str | None:
    """The highest level whose threshold `spend` reaches (None if the programme has none)."""
    if ruleset.tiers is None:
        return None
    best = None
    for t in ruleset.tiers.levels:
        if spend >= t.min_spend:
            best = t.id
    return best


def resolve_tier(ruleset: RuleSet, customer: Customer) -> str | None:
    """The tier to price this customer at: assigned, or higher if the spend already earns it."""
    tiers = ruleset.tiers
    if tiers is None:
        return customer.tier
    by_spend = tier_for_spend(ruleset, customer.qualifying_spend)
    if tiers.rank(customer.tier) >= tiers.rank(by_spend):
        return customer.tier
    return by_spend


def window_end(ruleset: RuleSet, now: datetime) -> datetime | None:
    """When the current calendar-month window closes (the central re-assigns tiers then).

    For a rolling window there is no single end: the central recomputes spend over the last
    window_days every day, and None is returned.
    """
    if ruleset.tiers is None or ruleset.tiers.window != "calendar_month":
        return None
    if ruleset.programme.time_zone is not None:  # customers' months are the programme's
        now = now.astimezone(ruleset.programme.time_zone)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)
