"""When the daily Z report is due: at HH:MM on the store's wall clock.

The store's zone is the one the rule set in force gives it (`stores.<id>.time_zone`, else
the programme's), as for happy hours and return windows, so a till whose machine is set to
another zone (an image prepared in Moscow, a till in Vladivostok) still closes the shift at
the store's 23:55. Without a rule set, or a zone in it, the machine's own zone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from tzlocal import get_localzone

from agent.rules_cache import NoRuleSet, RulesCache
from protocol.rules.place import place_of

JOB_ID = "shift_close"


def store_zone(rules: RulesCache, store: str, now: datetime | None = None,
               machine: Callable[[], tzinfo] = get_localzone) -> tzinfo:
    try:
        _, ruleset = rules.get(now=now)
    except NoRuleSet:
        return machine()
    return place_of(ruleset, store).time_zone or machine()


def daily_at(hhmm: str, zone: tzinfo) -> CronTrigger:
    hour, minute = (int(x) for x in hhmm.split(":"))
    return CronTrigger(hour=hour, minute=minute, timezone=zone)


class ShiftCloseSchedule:
    """The scheduler's shift-close job, moved when the store's zone changes: call refresh()
    at start and after each rule-set pull (a new version may bring or change the zone)."""

    def __init__(self, scheduler: Any, close: Callable[[], Awaitable[None]], at: str,
                 rules: RulesCache, store: str,
                 machine: Callable[[], tzinfo] = get_localzone) -> None:
        self.scheduler, self.close, self.at = scheduler, close, at
        self.rules, self.store, self.machine = rules, store, machine
        self.zone: tzinfo | None = None

    def refresh(self, now: datetime | None = None) -> None:
        zone = store_zone(self.rules, self.store, now, self.machine)
        if zone == self.zone:
            return
        self.scheduler.add_job(self.close, daily_at(self.at, zone), id=JOB_ID,
                               replace_existing=True)
        self.zone = zone
