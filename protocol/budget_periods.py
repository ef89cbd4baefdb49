"""Budget periods of a campaign's per-customer cap, as both the central and a till count them.

A period is named by a key ("month:2026-11"); both ends must compute the same key for the
same moment, so the till knows when the central's figure for a customer has gone stale
(a new month began) without waiting for the central to say so. Periods are calendar periods
of the programme's time zone (UTC if it names none), like tier windows: a chain spanning
time zones has one month boundary, not one per store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

# The compiler's BUDGET_PERIODS; "campaign" is the campaign's whole life.
PERIODS = ("day", "week", "month", "year", "campaign")


def period_key(period: str, at: datetime, zone: tzinfo | None = None) -> str:
    """The key of the `period` that contains `at` (timezone-aware), in the programme's
    `zone` (protocol.rules.programme_zone; None: UTC)."""
    day = at.astimezone(zone or UTC).date()
    if period == "day":
        return f"day:{day.isoformat()}"
    if period == "week":  # ISO weeks, from Monday
        return f"week:{(day - timedelta(days=day.weekday())).isoformat()}"
    if period == "month":
        return f"month:{day.year:04d}-{day.month:02d}"
    if period == "year":
        return f"year:{day.year:04d}"
    if period == "campaign":
        return "campaign"
    raise ValueError(f"unknown budget period {period!r}")
