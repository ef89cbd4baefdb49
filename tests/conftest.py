"""Fixtures shared across test modules: a central app on a temporary database, SQLite and
PostgreSQL in turn (tests/databases.py); a headless Chromium page (tests/browser.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from central.app import make_app
from central.web_common import DB, SECRETS
from tests.browser import browser_page  # noqa: F401 - a fixture, for every module
from tests.databases import KINDS, postgres_schema


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


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a test's central keeps its data: a new SQLite file, then a new PostgreSQL
    schema (dropped afterwards)."""
    if request.param == "sqlite":
        yield tmp_path / "central.db"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
async def central(aiohttp_client: Callable, tmp_path: Path, clock: FakeClock,
                  database: Path | str):
    """A test client for a central app on its own data directory and database."""
    app = make_app(tmp_path / "central", clock, reprice_every=None,  # tests re-price by hand
                   database=database if isinstance(database, str) else None)
    client = await aiohttp_client(app)
    client.db = app[DB]
    client.secrets = app[SECRETS]
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    return client


@pytest.fixture
def store_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """The database of a store's central process: its SQLite file (None) unless the test
    module parametrizes this fixture (`indirect`) with KINDS, as those that exercise the
    central do; tests of the till alone need not run twice."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
async def store(tmp_path: Path, store_database: str | None):
    """A store of real processes: a central, and one till with its simulated devices."""
    from tillpoint.store_harness import StoreHarness

    async with StoreHarness(tmp_path, database=store_database) as s:
        await s.start_central()
        await s.add_till("till-1")
        yield s


@pytest.fixture
async def rig(aiohttp_client: Callable, tmp_path: Path):
    """The POS API in-process (tests/pos_rig.py) behind a real HTTP test server. Modules that
    need a rig set up otherwise (a clock of their own) define their own `rig`."""
    from tests.pos_rig import Rig

    r = Rig(tmp_path)
    r.client = await aiohttp_client(r.app())
    yield r
    r.db.close()
