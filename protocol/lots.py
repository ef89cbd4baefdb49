"""When a lot of earned points becomes spendable and when it expires: one answer for all.

The till prices a lot's dates when it earns them and journals them with the lot; the central
keeps them; a till offline for days still knows from them, without asking anyone, when the
points it holds turn available and when they are gone. So the dates are computed here, once.

- The return window counts whole days in the store's time zone, not hours from the sale, as
  returns are counted by law: bought on day 0 with a window of 14 days, the points are
  pending through 23:59:59 local time on day 14 and available from 00:00 on day 15.
  A window of 0 days means no window: available at once.
- The lifetime runs from the activation: a number of days (local midnight again), or to the
  end of the month, quarter or year of the activation in the programme's zone, so a customer
  has one month boundary wherever they shop.

Instants are timezone-aware datetimes; the zones are `tzinfo` (zoneinfo.ZoneInfo, or a
fixed offset), never looked up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

PERIODS = ("month", "quarter", "year")


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How long points live once active: `days`, or to the end of a calendar `period`;
    neither: for ever."""

    days: int | None = None
    period: str | None = None  # month, quarter, year


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """The first instant of `day` on the wall clock of `zone`."""
    return _midnight(day, zone)


def _midnight(day: date, zone: tzinfo) -> datetime:
    # Through UTC and back: a midnight that a DST jump skips becomes the first instant
    # of that day that exists, not a wall time that never happened.
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC).astimezone(zone)


def activation(earned_at: datetime, return_days: int, store_zone: tzinfo) -> datetime:
    """The first instant the points are spendable: local midnight after `return_days` whole
    days in the store's zone (at once for a window of 0)."""
    if return_days <= 0:
        return earned_at
    local_day = earned_at.astimezone(store_zone).date()
    return _midnight(local_day + timedelta(days=return_days + 1), store_zone)


def expiry(activates_at: datetime, lifetime: Lifetime,
           programme_zone: tzinfo) -> datetime | None:
    """The first instant the points are gone (None: they never expire)."""
    if lifetime.days is not None:
        # Days of the activation's own zone: a lot that activates at local midnight
        # expires at local midnight too, whatever DST did meanwhile.
        local = activates_at
        return _midnight(local.date() + timedelta(days=lifetime.days), local.tzinfo or UTC) \
            if _is_midnight(local) else local + timedelta(days=lifetime.days)
    if lifetime.period is not None:
        return period_end(activates_at.astimezone(programme_zone), lifetime.period)
    return None


def lot_dates(earned_at: datetime, return_days: int, lifetime: Lifetime, store_zone: tzinfo,
              programme_zone: tzinfo) -> tuple[datetime, datetime | None]:
    """(activation, expiry) of points earned at `earned_at`: the one function the till's
    rules engine and the central's own lots (bonuses, adjustments) both take dates from."""
    activates = activation(earned_at, return_days, store_zone)
    return activates, expiry(activates, lifetime, programme_zone)


def period_end(t: datetime, period: str) -> datetime:
    """The first instant after the month/quarter/year containing t, in t's own zone."""
    if period not in PERIODS:
        raise ValueError(f"unknown lifetime period {period!r}")
    zone = t.tzinfo or UTC
    if period == "year":
        return _midnight(date(t.year + 1, 1, 1), zone)
    months = 1 if period == "month" else 3 - (t.month - 1) % 3
    month0 = t.month - 1 + months
    return _midnight(date(t.year + month0 // 12, month0 % 12 + 1, 1), zone)


def _is_midnight(t: datetime) -> bool:
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)
