"""A customer's points at any instant: a replay of their lots and movements in time order.

The central stores each lot's remaining points and status and each customer's debt, but a
stored figure is only as fresh as the last time someone looked at that customer: a lot
activates and expires by the clock, not when an entry arrives. So every reader (the central's
head-office API and the deltas it sends, a till pricing offline) takes the stored state and
replays the clock up to its `now` with `advance`, and the central's scheduled job writes the
same replay back. `replay` is the whole story from the start, with spending and earning too:
the reference the others are tested against, and the till's own unsynced entries on top of
the central's last word.

The rules, in time order; at one instant first activations, then debt, then expiries:
- a lot is pending until `activates_at`, available from then until `expires_at`;
- debt is paid from available lots as soon as there are any, so a lot pays debt when it
  activates, before it can expire;
- spending takes the soonest-expiring available lots first (ties by key), and what they
  cannot cover becomes debt;
- an expired lot keeps nothing: it is never spendable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

# Lots that never expire are kept as expiring at the end of time (ISO, UTC).
NEVER = "9999-12-31T00:00:00+00:00"


@dataclass(frozen=True, slots=True)
class Lot:
    key: int  # orders lots of equal expiry: the order they were earned in
    remaining: int
    activates_at: datetime
    expires_at: datetime
    active: bool = False  # its activation has been replayed (the central's status)
    receipt_id: str | None = None  # the sale that earned it, for a return's clawback
    expired: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    available: int  # spendable, debt already subtracted (negative while in debt)
    pending: int  # waiting out the return window
    debt: int

    def to_dict(self) -> dict[str, int]:
        return {"available": self.available, "pending": self.pending, "debt": self.debt}


@dataclass(frozen=True, slots=True)
class Step:
    """What advancing the clock did to one lot: 'activate', 'pay' (debt paid from it) or
    'expire', with the points concerned, at the instant it happened."""

    kind: str
    key: int
    points: int
    at: datetime


@dataclass(frozen=True, slots=True)
class State:
    lots: tuple[Lot, ...]
    debt: int

    def balance(self) -> Balance:
        available = sum(lot.remaining for lot in self.lots if lot.active and not lot.expired)
        pending = sum(lot.remaining for lot in self.lots if not lot.active)
        return Balance(available - self.debt, pending, self.debt)


# -- the clock --------------------------------------------------------------------------------

def advance(state: State, now: datetime) -> tuple[State, list[Step]]:
    """The state at `now`: every activation and expiry due by then, in time order."""
    if not any(lot.activates_at <= now if not lot.active else lot.expires_at <= now
               for lot in state.lots if not lot.expired) and not (
            state.debt > 0 and any(lot.active and lot.remaining for lot in state.lots)):
        return state, []  # the usual read: nothing is due
    lots = {lot.key: lot for lot in state.lots}
    debt = state.debt
    steps: list[Step] = []
    # A state read from storage may hold debt beside available points (written before a
    # lot's activation was): pay it first.
    debt = _pay_debt(lots, debt, steps, None)
    while True:
        due = [t for lot in lots.values() if not lot.expired
               for t in ((lot.activates_at,) if not lot.active else (lot.expires_at,))
               if t <= now]
        if not due:
            break
        at = min(due)
        for lot in sorted(lots.values(), key=_spend_order):
            if not lot.active and lot.activates_at <= at:
                lots[lot.key] = replace(lot, active=True)
                steps.append(Step("activate", lot.key, lot.remaining, at))
        debt = _pay_debt(lots, debt, steps, at)
        for lot in sorted(lots.values(), key=_spend_order):
            if lot.active and not lot.expired and lot.expires_at <= at:
                lots[lot.key] = replace(lot, remaining=0, expired=True)
                steps.append(Step("expire", lot.key, lot.remaining, at))
    return State(tuple(lots.values()), debt), steps


def balance_at(state: State, now: datetime) -> Balance:
    return advance(state, now)[0].balance()


def next_change(state: State, after: datetime) -> datetime | None:
    """The next instant after `after` at which a lot activates or expires (None: none)."""
    times = [lot.expires_at if lot.active else lot.activates_at
             for lot in state.lots if not lot.expired and (lot.remaining or not lot.active)]
    later = [t for t in times if t > after]
    return min(later) if later else None


def _spend_order(lot: Lot) -> tuple[datetime, int]:
    return (lot.expires_at, lot.key)


def _pay_debt(lots: dict[int, Lot], debt: int, steps: list[Step],
              at: datetime | None) -> int:
    if debt <= 0:
        return debt
    for lot in sorted(lots.values(), key=_spend_order):
        if debt == 0:
            break
        if lot.active and not lot.expired and lot.remaining > 0:
            take = min(debt, lot.remaining)
            lots[lot.key] = replace(lot, remaining=lot.remaining - take)
            debt -= take
            steps.append(Step("pay", lot.key, take, at or lot.activates_at))
    return debt


# -- the whole story ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Earn:
    at: datetime
    key: int
    points: int
    activates_at: datetime
    expires_at: datetime
    receipt_id: str | None = None


@dataclass(frozen=True, slots=True)
class Spend:
    """A redemption (or a manual deduction); with `receipt_id`, a clawback, which takes from
    that sale's own lots first, pending or not."""

    at: datetime
    points: int
    receipt_id: str | None = None


@dataclass(frozen=True, slots=True)
class Credit:
    """Points given back (a refund of points spent): they pay debt first, and what is left
    is a lot of its own with the dates given."""

    at: datetime
    points: int
    key: int
    activates_at: datetime
    expires_at: datetime


Event = Earn | Spend | Credit


def replay(state: State, events: Iterable[Event], now: datetime) -> State:
    """`state`, then each event at its instant (in the order given for equal instants), then
    the clock up to `now`. Events after `now` are not applied."""
    for event in sorted(events, key=lambda e: e.at):
        if event.at > now:
            break
        state, _ = advance(state, event.at)
        state = apply(state, event)
    return advance(state, now)[0]


def apply(state: State, event: Event) -> State:
    """One event at its own instant, on a state already advanced to it."""
    lots = {lot.key: lot for lot in state.lots}
    debt = state.debt
    if isinstance(event, Earn | Credit):
        points = event.points
        if isinstance(event, Credit):
            paid = min(debt, points)
            debt -= paid
            points -= paid
        if points or isinstance(event, Earn):
            lots[event.key] = Lot(event.key, points, event.activates_at, event.expires_at,
                                  active=event.activates_at <= event.at,
                                  receipt_id=getattr(event, "receipt_id", None))
    else:
        left = event.points
        if event.receipt_id is not None:
            left = _take(lots, left, lambda lot: lot.receipt_id == event.receipt_id)
        left = _take(lots, left, lambda lot: lot.active)
        debt += left
    new = State(tuple(lots.values()), debt)
    if isinstance(event, Earn | Credit):
        lots = {lot.key: lot for lot in new.lots}
        debt = _pay_debt(lots, debt, [], event.at)
        new = State(tuple(lots.values()), debt)
    return new


def _take(lots: dict[int, Lot], points: int, which) -> int:
    for lot in sorted(lots.values(), key=_spend_order):
        if points == 0:
            break
        if lot.expired or lot.remaining == 0 or not which(lot):
            continue
        take = min(points, lot.remaining)
        lots[lot.key] = replace(lot, remaining=lot.remaining - take)
        points -= take
    return points


def state_of(lots: Sequence[Lot], debt: int) -> State:
    return State(tuple(lots), debt)


# -- on the wire: the lots a customer delta carries to tills ------------------------------

def live_lots(state: State) -> tuple[Lot, ...]:
    """The lots that can still move a balance: points left, not expired."""
    return tuple(lot for lot in state.lots if lot.remaining > 0 and not lot.expired)


def lot_to_wire(lot: Lot) -> dict[str, Any]:
    return {"key": lot.key, "points": lot.remaining, "activates": _iso(lot.activates_at),
            "expires": _iso(lot.expires_at), "active": lot.active,
            "receipt_id": lot.receipt_id}


def lot_from_wire(d: dict[str, Any]) -> Lot:
    """A lot as a delta carries it; raises ValueError naming what is wrong."""
    try:
        key, points, active = d["key"], d["points"], d["active"]
        activates, expires = _parse(d["activates"]), _parse(d["expires"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"lot: missing or malformed field {e}") from None
    if type(key) is not int or type(points) is not int or points < 0:
        raise ValueError("lot: key and points must be integers, points not negative")
    if type(active) is not bool:
        raise ValueError("lot: active must be true or false")
    receipt = d.get("receipt_id")
    return Lot(key, points, activates, expires, active=active,
               receipt_id=receipt if isinstance(receipt, str) else None)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def _parse(text: object) -> datetime:
    if not isinstance(text, str):
        raise TypeError("a date must be an ISO string")
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"lot: date {text!r} has no time zone")
    return t
