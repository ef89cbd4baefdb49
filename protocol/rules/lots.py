"""When earned points become spendable and when they expire, as the engine asks it.

Points stay pending through the return window (a return in that time simply cancels them;
the window may differ by goods, channel and tier, so one receipt can make several lots),
then live for the programme's lifetime: a number of days after activation, or to the end of
the month, quarter or year in which they activate. A campaign may give its points a shorter
life of its own (a birthday bonus that burns in 30 days). The dates themselves come from
protocol.lots, which the central uses too.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from protocol import lots
from protocol.lots import period_end
from protocol.rules.model import Programme

__all__ = ["activation", "expiry", "period_end"]


def activation(now: datetime, return_days: int, store_zone: tzinfo | None = None) -> datetime:
    """`now` is the store's wall clock (the engine's context): its zone is the store's."""
    return lots.activation(now, return_days, store_zone or now.tzinfo)  # type: ignore[arg-type]


def expiry(prog: Programme, activates_at: datetime, lifetime_days: int | None,
           programme_zone: tzinfo | None = None) -> datetime | None:
    zone = programme_zone or activates_at.tzinfo
    if lifetime_days is not None:
        return lots.expiry(activates_at, lots.Lifetime(days=lifetime_days), zone)  # type: ignore[arg-type]
    return lots.expiry(activates_at, lots.Lifetime(prog.lifetime_days, prog.lifetime_period),
                       zone)  # type: ignore[arg-type]
