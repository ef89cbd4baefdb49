"""A receipt brings the till's next push forward, coalescing a burst into one batch; it never
puts the push off, or a till selling without a pause would send nothing until it stopped."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC
from types import SimpleNamespace

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.service import DEBOUNCE_S, Agent

INTERVAL_S = 0.5


async def test_receipts_without_a_pause_do_not_starve_the_push():
    pushes: list[float] = []

    async def push() -> None:
        pushes.append(time.monotonic())

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(push, "interval", seconds=INTERVAL_S, id="push", max_instances=1,
                      coalesce=True)
    agent = SimpleNamespace(scheduler=scheduler)  # what wake_push uses of the Agent
    scheduler.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # a receipt every 50 ms, for two seconds
            Agent.wake_push(agent)  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
    finally:
        scheduler.shutdown(wait=False)
    # Before the change each receipt moved the push DEBOUNCE_S away: none ran at all.
    assert len(pushes) >= 2.0 / INTERVAL_S - 1
    gaps = [b - a for a, b in itertools.pairwise(pushes)]
    assert max(gaps) <= 2 * INTERVAL_S, gaps  # on a busy machine


async def test_a_receipt_after_a_quiet_spell_is_pushed_within_the_debounce():
    pushes: list[float] = []

    async def push() -> None:
        pushes.append(time.monotonic())

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(push, "interval", seconds=60, id="push", max_instances=1, coalesce=True)
    scheduler.start()
    try:
        sold = time.monotonic()
        Agent.wake_push(SimpleNamespace(scheduler=scheduler))  # type: ignore[arg-type]
        deadline = sold + 5
        while not pushes and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        scheduler.shutdown(wait=False)
    assert pushes and DEBOUNCE_S - 0.05 <= pushes[0] - sold <= DEBOUNCE_S + 1.5  # busy box
