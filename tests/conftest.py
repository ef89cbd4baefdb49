"""Fixtures shared across test modules: a central app on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.app import make_app
from central.web_common import DB, SECRETS


class FakeClock:
    """Time that tests move by hand: logic takes `now`, so no test ever sleeps for it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def central(aiohttp_client: Callable, tmp_path: Path, clock: FakeClock):
    """A test client for a central app on its own data directory."""
    app = make_app(tmp_path / "central", clock, reprice_every=None)  # tests re-price by hand
    client = await aiohttp_client(app)
    client.db = app[DB]
    client.secrets = app[SECRETS]
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    return client


@pytest.fixture
async def store(tmp_path: Path):
    """A store of real processes: a central, and one till with its simulated devices."""
    from tillpoint.store_harness import StoreHarness

    async with StoreHarness(tmp_path) as s:
        await s.start_central()
        await s.add_till("till-1")
        yield s
