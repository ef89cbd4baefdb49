"""Where and when a receipt happens, as the rules judge it: the store's zone, region, channel.

A store's wall clock decides happy hours, weekdays, "birthday today" and return windows; a
customer's calendar periods (tier windows, budget periods, month-end expiry) follow one
programme zone, so a customer has one month boundary wherever they shop. Both come from the
rule set (`programme.time_zone`, `stores.<id>.time_zone`), so a till pricing offline and the
central re-pricing later read the same zone for the same sale. `local_time` is the one place
an instant becomes the engine's local time.

Without any zone in the rule set, `now` is read as given (its own offset), as before zones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.rules.inputs import Receipt
from protocol.rules.model import RuleSet, StorePlace
from protocol.rules.schema import Reader, join

STORE = frozenset({"time_zone", "region", "channel", "name"})


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone of that name; raises ValueError saying so for anything else."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"not an IANA time zone name: {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. Europe/Moscow)") from None


def read_zone(r: Reader, d: Mapping[str, Any], key: str, path: str) -> ZoneInfo | None:
    """An optional IANA zone field of the document, reported under its path if wrong."""
    if key not in d:
        return None
    try:
        return zone_named(d[key])
    except ValueError as e:
        r.error(join(path, key), str(e))
        return None


def read_stores(r: Reader, value: object, path: str,
                channels: tuple[str, ...]) -> dict[str, StorePlace]:
    """`stores`: {"store-42": {"time_zone": "Europe/Moscow", "region": "msk",
    "channel": "till"}}; every field optional."""
    out: dict[str, StorePlace] = {}
    if not isinstance(value, Mapping):
        r.error(path, "must be an object of stores by id")
        return out
    for sid, raw in value.items():
        p = join(path, str(sid))
        d = r.obj(raw, p, STORE)
        region = r.str_(d, "region", p, default="")
        channel = r.str_(d, "channel", p, default="", choices=channels) \
            if "channel" in d else ""
        out[str(sid)] = StorePlace(read_zone(r, d, "time_zone", p), region, channel)
    return out


def place_of(ruleset: RuleSet, store: str) -> StorePlace:
    """The store's zone (its own, else the programme's), region and channel."""
    own = ruleset.stores.get(store)
    zone = (own.time_zone if own else None) or ruleset.programme.time_zone
    if own is None:
        return StorePlace(zone, "", "")
    return replace(own, time_zone=zone)


def local_time(ruleset: RuleSet, store: str, instant: datetime) -> datetime:
    """`instant` on the store's wall clock: what the rules engine reads hours and days from."""
    zone = place_of(ruleset, store).time_zone
    return instant.astimezone(zone) if zone is not None else instant


def programme_zone(ruleset: RuleSet, fallback: tzinfo | None = None) -> tzinfo | None:
    """The zone of customers' calendar periods (tier windows, budget periods, expiry)."""
    return ruleset.programme.time_zone or fallback


def placed(ruleset: RuleSet, receipt: Receipt) -> Receipt:
    """The receipt with its store's region and channel as the rule set declares them: a
    till cannot claim another region, and a till that was never told still gets it right."""
    own = ruleset.stores.get(receipt.store)
    if own is None or not (own.region or own.channel):
        return receipt
    return replace(receipt, region=own.region or receipt.region,
                   channel=own.channel or receipt.channel)
