"""After an outage a chain's tills come back quickly and spread out: the backoff is capped and
jittered, and a busy central's Retry-After is honoured.

Forty tills run in this process, each with its own store and sync client, over real HTTP
through a proxy that takes the central away. Time passes on the sync clients' clocks, so a
five-minute outage costs no waiting.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from agent.central_client import CentralError
from agent.config import AgentConfig
from agent.retry_policy import next_wait
from tests.fault_proxy import FaultPlan, FaultProxy
from tests.sync_fixtures import LocalTill, enrol, live_central
from tests.test_sync_outage import FakeMonotonic

__all__ = ["live_central"]

TILLS = 40
STEP_S = 0.25


async def _attempt_due(tills: list[LocalTill], acked_at: dict[int, float], now: float) -> None:
    for k, till in enumerate(tills):
        if k in acked_at or till.sync.backing_off():
            continue
        try:
            await till.sync.push()
        except CentralError:
            continue
        acked_at[k] = now


async def test_tills_are_back_within_seconds_of_the_central_and_not_all_at_once(
        live_central, tmp_path):
    ident = await enrol(live_central)
    proxy = FaultProxy(ident.central_url, FaultPlan(rate=0.0))
    url = await proxy.start()
    mono = FakeMonotonic()
    tills = [LocalTill(dataclasses.replace(ident, central_url=url), tmp_path / f"t{k}.db",
                       monotonic=mono, rng=random.Random(k)) for k in range(TILLS)]
    try:
        for till in tills:
            till.sell()
        proxy.down = True
        outage_end = mono.t + 300
        while mono.t < outage_end:  # five minutes down: every till keeps failing
            await _attempt_due(tills, {}, mono.t)
            mono.t += STEP_S
        attempts_while_down = sum(t.sync.state.failures for t in tills)
        # Capped: a till tries at least every 10 s, so a few hundred tries in five minutes,
        # not thousands (a tight loop) and not a handful (a long sleep).
        assert TILLS * 300 / 10 <= attempts_while_down <= TILLS * 300 / 4

        proxy.down = False
        back_at, acked_at = mono.t, {}
        while len(acked_at) < TILLS and mono.t < back_at + 60:
            await _attempt_due(tills, acked_at, mono.t)
            mono.t += STEP_S
        delays = sorted(t - back_at for t in acked_at.values())
        assert len(delays) == TILLS
        assert delays[int(0.95 * TILLS) - 1] <= 10 and delays[-1] <= 30
        # Spread out: no single second brings back more than a quarter of the chain.
        assert max(Counter(int(d) for d in delays).values()) <= TILLS // 4
        acked = live_central.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
        assert acked == TILLS
    finally:
        for till in tills:
            await till.close()
        await proxy.close()


async def test_a_busy_central_s_retry_after_is_honoured(live_central, tmp_path):
    ident = await enrol(live_central)
    proxy = FaultProxy(ident.central_url, FaultPlan(rate=0.0), busy_retry_after=45)
    mono = FakeMonotonic()
    till = LocalTill(dataclasses.replace(ident, central_url=await proxy.start()),
                     tmp_path / "t.db", monotonic=mono, rng=random.Random(1))
    try:
        till.sell()
        try:
            await till.sync.push()
        except CentralError as e:
            assert e.status == 503 and e.retry_after_s == 45
        else:
            raise AssertionError("a busy central's 503 was taken for an answer")
        # Longer than the 10 s cap: the central asked for 45.
        assert till.sync.state.next_attempt - mono.t >= 45
        mono.t += 44
        assert till.sync.backing_off()
        proxy.busy_retry_after = None
        mono.t += 11
        assert not till.sync.backing_off()
        assert await till.sync.push() == 1
    finally:
        await till.close()
        await proxy.close()


def test_the_wait_doubles_to_the_cap_within_its_upper_half_and_bounds_retry_after():
    rng = random.Random(7)
    for failures in range(1, 40):
        ceiling = min(10.0, 0.5 * 2 ** failures)
        waits = [next_wait(failures, 10.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 40  # jittered, not one figure for everyone
    assert next_wait(3, 10.0, rng, retry_after_s=30) >= 30
    # A Retry-After of a day is taken as two minutes: tills must not go silent for hours.
    assert next_wait(3, 10.0, rng, retry_after_s=86400) <= 120


@pytest.mark.parametrize("setting, value", [
    ("max_backoff", 0), ("max_backoff", 86400), ("sync_interval", -1),
    ("pull_interval", "30"), ("sync_interval", True), ("max_backoff", float("nan"))])
def test_sync_timings_out_of_bounds_are_refused_by_name(tmp_path, setting, value):
    with pytest.raises(ValueError, match=setting):
        AgentConfig.load(tmp_path, {setting: value})


def test_sync_timings_from_the_settings_file(tmp_path):
    (tmp_path / "agent.toml").write_text("max_backoff = 5\nsync_interval = 0.5\n")
    cfg = AgentConfig.load(tmp_path, {})
    assert (cfg.max_backoff, cfg.sync_interval, cfg.pull_interval) == (5, 0.5, 30.0)
    (tmp_path / "agent.toml").write_text("max_backoff = 3600\n")
    with pytest.raises(ValueError, match=r"max_backoff must be .* from 0\.5 to 600"):
        AgentConfig.load(tmp_path, {})
