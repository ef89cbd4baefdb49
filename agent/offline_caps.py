"""Offline caps at the till: how many points may be spent on this till's own word.

The till never asks the central during a checkout; it spends from the central's last
balance plus its own unsynced entries. The programme's caps (central.offline_caps, received
with customer deltas) bound what that can let through: per receipt, per card per day, the
till's total unsynced redemption, and none at all once the till has not reached the central
for too long. Earning is never capped. `allowance` is pure: usage and time come in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo

import sqlite_utils

from agent import journal
from agent.store import get_meta, set_meta
from protocol.lots import local_midnight


@dataclass(frozen=True)
class Caps:
    redeem_per_receipt: int | None = None
    redeem_per_card_day: int | None = None
    till_outstanding: int | None = None
    max_offline_s: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Caps:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Usage:
    card_today: int  # points this card spent at this till today
    outstanding: int  # points spent at this till that the central has not acknowledged
    offline_s: float | None  # since the till last reached the central; None: never


@dataclass(frozen=True)
class Allowance:
    points: int | None  # None: no offline cap applies
    reason: str | None  # for the cashier, when a cap is what limits


def allowance(caps: Caps, usage: Usage) -> Allowance:
    """The most this card may spend on this receipt under the caps, and the binding cap."""
    if caps.max_offline_s is not None and (usage.offline_s is None
                                           or usage.offline_s > caps.max_offline_s):
        hours = caps.max_offline_s / 3600
        return Allowance(0, f"points cannot be spent: this till has not reached head office"
                            f" for more than {hours:g} h")
    limits: list[tuple[int, str]] = []
    if caps.redeem_per_receipt is not None:
        limits.append((caps.redeem_per_receipt,
                       f"at most {caps.redeem_per_receipt} points per receipt at a till"))
    if caps.redeem_per_card_day is not None:
        left = max(0, caps.redeem_per_card_day - usage.card_today)
        limits.append((left, f"daily limit of {caps.redeem_per_card_day} points per card"
                             f" ({usage.card_today} spent today)"))
    if caps.till_outstanding is not None:
        left = max(0, caps.till_outstanding - usage.outstanding)
        limits.append((left, f"this till's limit of {caps.till_outstanding} points spent"
                             f" before head office confirms them ({usage.outstanding} waiting)"))
    if not limits:
        return Allowance(None, None)
    points, reason = min(limits, key=lambda x: x[0])
    return Allowance(points, reason)


# -- the till's store -------------------------------------------------------------------------

def load(db: sqlite_utils.Database) -> Caps:
    text = get_meta(db, "offline_caps")
    return Caps.from_dict(json.loads(text)) if text else Caps()


def save(db: sqlite_utils.Database, caps: Caps) -> None:
    set_meta(db, "offline_caps", json.dumps(asdict(caps)))


def mark_contact(db: sqlite_utils.Database, now: datetime) -> None:
    set_meta(db, "last_contact_at", now.isoformat(timespec="seconds"))


def day_bounds(now: datetime, zone: tzinfo | None = None) -> tuple[str, str]:
    """The store's day around `now` as two UTC ISO instants [start, end), comparable with
    journal times: "per card per day" is the store's day, midnight to midnight."""
    if zone is None:
        day = now.date()
        return day.isoformat(), (day + timedelta(days=1)).isoformat()
    day = now.astimezone(zone).date()
    return tuple(local_midnight(d, zone).astimezone(UTC).isoformat(timespec="seconds")
                 for d in (day, day + timedelta(days=1)))  # type: ignore[return-value]


def usage(db: sqlite_utils.Database, customer_id: str, now: datetime,
          zone: tzinfo | None = None) -> Usage:
    """`zone`: the store's (protocol.rules.place_of), whose days the daily cap counts."""
    day, next_day = day_bounds(now, zone)
    ep = journal.epoch(db)
    acked = int(get_meta(db, "acked_seq", "0") or 0)
    # Redemption only; a refund of points on a return does not lift the caps again.
    card_today = db.execute(
        "SELECT COALESCE(SUM(redeemed), 0) FROM journal WHERE customer_id = ? AND at >= ?"
        " AND at < ?", [customer_id, day, next_day]).fetchone()[0]
    outstanding = db.execute(
        "SELECT COALESCE(SUM(redeemed), 0) FROM journal WHERE epoch = ? AND seq > ?",
        [ep, acked]).fetchone()[0]
    contact = get_meta(db, "last_contact_at")
    offline_s = (now - datetime.fromisoformat(contact)).total_seconds() if contact else None
    return Usage(card_today, outstanding, offline_s)
