"""When earned points become spendable and when they expire.

Points stay pending through the return window (a return in that time simply cancels them;
the window may differ by goods, channel and tier, so one receipt can make several lots),
then live for the programme's lifetime: a number of days after activation, or to the end of
the month, quarter or year in which they activate. A campaign may give its points a shorter
life of its own (a birthday bonus that burns in 30 days).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from protocol.rules.model import Programme


def activation(now: datetime, return_days: int) -> datetime:
    return now + timedelta(days=return_days)


def expiry(prog: Programme, activates_at: datetime, lifetime_days: int | None) -> datetime | None:
    if lifetime_days is not None:
        return activates_at + timedelta(days=lifetime_days)
    if prog.lifetime_days is not None:
        return activates_at + timedelta(days=prog.lifetime_days)
    if prog.lifetime_period is not None:
        return period_end(activates_at, prog.lifetime_period)
    return None


def period_end(t: datetime, period: str) -> datetime:
    """The first instant after the month/quarter/year containing t (t's own wall clock)."""
    if period == "year":
        return t.replace(year=t.year + 1, month=1, day=1, hour=0, minute=0, second=0,
                         microsecond=0)
    months = 1 if period == "month" else 3 - (t.month - 1) % 3
    month0 = t.month - 1 + months
    return t.replace(year=t.year + month0 // 12, month=month0 % 12 + 1, day=1, hour=0,
                     minute=0, second=0, microsecond=0)
