"""The POS API's access log: a line for a request that kept the POS waiting or failed on the
till's side, none for the thousands of quick ones a till answers in a day."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from agent import pos_api
from agent.pos_api import Till, make_runner
from agent.pos_auth import PosSecret
from tests.pos_rig import Rig, RigCardKeys


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Rig, str]]:
    """The rig's POS API served as the agent serves it (agent.pos_api.make_runner)."""
    rig = Rig(tmp_path)
    till = Till(rig.checkout, rig.last_card, RigCardKeys(), rig.refresh_customers,
                rig.status, rig.close_shift)
    runner = make_runner(till, PosSecret(rig.secret_path))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield rig, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        rig.db.close()


async def _status(rig: Rig, url: str, times: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(times):
            async with session.get(url + "/pos/v1/status", headers=rig.auth) as resp:
                assert resp.status == 200


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp.access"]


async def test_quick_requests_leave_no_line(served: tuple[Rig, str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await _status(*served, times=5)
    assert _access_lines(caplog) == []


async def test_a_slow_request_is_logged_with_its_path_and_time(
        served: tuple[Rig, str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pos_api, "SLOW_REQUEST_S", 0.0)  # every request counts as slow
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        await _status(*served, times=1)
    lines = _access_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "GET /pos/v1/status: 200 in " in lines[0].getMessage()
