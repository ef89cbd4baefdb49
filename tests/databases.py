"""The databases the central's tests run on: SQLite files, and PostgreSQL schemas.

Every central test that uses the `database` fixture (or the `central` app built on it) runs
twice, on a fresh SQLite file and in a fresh schema of the PostgreSQL on 127.0.0.1:5432
(user postgres, trust authentication; `.ci/run` starts it), dropped afterwards. Where there
is no such server the PostgreSQL runs are skipped, saying so, unless
TILLPOINT_REQUIRE_POSTGRES is set (CI sets it): then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

SERVER = os.environ.get("TILLPOINT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ("sqlite", "postgresql")


@cache
def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        import psycopg

        with psycopg.connect(SERVER, connect_timeout=5, autocommit=True) as c:
            c.execute("SELECT 1")
    except Exception as e:
        return f"no PostgreSQL at {SERVER}: {e}"
    return None


def require_postgres() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("TILLPOINT_REQUIRE_POSTGRES"):
        pytest.fail(problem)
    pytest.skip(problem)


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(SERVER, autocommit=True) as c:
        c.execute(sql)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose connections work in a schema of their own, dropped afterwards."""
    require_postgres()
    schema = "test_" + uuid.uuid4().hex[:16]
    _admin(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in SERVER else "?"
    try:
        yield f"{SERVER}{sep}options=-csearch_path%3D{schema}"
    finally:
        _admin(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def fresh_database(kind: str, directory: Path) -> Iterator[Path | str]:
    """A new database of that kind: a SQLite file in `directory`, or a PostgreSQL schema.
    For property tests, which need one per example (a fixture gives one per test)."""
    if kind == "sqlite":
        yield directory / f"central-{uuid.uuid4().hex[:8]}.db"
        return
    with postgres_schema() as url:
        yield url


# For a test of a store's processes that exercises the central: its central process runs on
# each database in turn (the `store_database` fixture in tests/conftest.py).
ON_BOTH_DATABASES = pytest.mark.parametrize("store_database", KINDS, indirect=True)
