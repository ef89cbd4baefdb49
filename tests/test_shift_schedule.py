"""The daily Z report at HH:MM of the store's own clock, whatever the machine's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler

from agent.rules_cache import RulesCache
from agent.shift_schedule import JOB_ID, ShiftCloseSchedule, store_zone
from agent.store import open_store
from protocol.rules import default_ruleset_doc
from protocol.wire import pack

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def hold(db, version: int, doc: dict, activates: str = "2020-01-01T00:00:00+00:00") -> None:
    db.execute("INSERT INTO rulesets (version, activates_at, doc, received_at)"
               " VALUES (?, ?, ?, ?)", [version, activates, pack(doc), activates])


async def close() -> None:  # what the scheduler would call
    return None


def next_close(scheduler: BackgroundScheduler, now: datetime) -> datetime:
    return scheduler.get_job(JOB_ID).trigger.get_next_fire_time(None, now)


MOSCOW = ZoneInfo("Europe/Moscow")  # the machine's zone: another one than the store's


def test_the_z_report_follows_the_stores_zone_in_the_rule_set(tmp_path):
    db = open_store(tmp_path / "agent.db")
    doc = default_ruleset_doc()
    doc["stores"] = {"vvo-1": {"time_zone": "Asia/Vladivostok"}}
    hold(db, 1, doc)
    # Version 2 moves the programme to Kaliningrad from 10:00 UTC; vvo-1 keeps its own zone,
    # another store follows the programme.
    later = {**doc, "programme": {**doc["programme"], "time_zone": "Europe/Kaliningrad"}}
    hold(db, 2, later, "2026-12-01T10:00:00+00:00")
    rules = RulesCache(db)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)  # holds its jobs, runs none
    try:
        vvo = ShiftCloseSchedule(scheduler, close, "23:55", rules, "vvo-1",
                                 machine=lambda: MOSCOW)
        vvo.refresh(NOW)
        # 23:55 in Vladivostok (UTC+10) is 13:55 UTC, not 20:55 (Moscow's 23:55).
        assert next_close(scheduler, NOW) == datetime(2026, 12, 1, 13, 55, tzinfo=UTC)
        # A store the rule set does not place: the machine's zone until version 2 is in
        # force, then the programme's (Kaliningrad, UTC+2: 21:55 UTC); the job moves.
        msk = ShiftCloseSchedule(scheduler, close, "23:55", rules, "msk-9",
                                 machine=lambda: MOSCOW)
        msk.refresh(NOW)
        assert next_close(scheduler, NOW) == datetime(2026, 12, 1, 20, 55, tzinfo=UTC)
        after = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
        msk.refresh(after)
        assert next_close(scheduler, after) == datetime(2026, 12, 1, 21, 55, tzinfo=UTC)
        assert len(scheduler.get_jobs()) == 1  # moved, not doubled
    finally:
        scheduler.shutdown(wait=False)
    db.close()


def test_without_a_rule_set_the_machines_zone(tmp_path):
    db = open_store(tmp_path / "agent.db")
    assert store_zone(RulesCache(db), "s1", NOW, machine=lambda: MOSCOW) is MOSCOW
    db.close()
