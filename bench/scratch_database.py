"""A database for one benchmark run: a SQLite file in a temporary directory, or a schema of
its own in the PostgreSQL that `--database` names, dropped afterwards. The benchmark never
writes into the tables of a central that may be using that database."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from central.db import is_url, redacted


@contextmanager
def scratch_database(url: str | None) -> Iterator[Path | str]:
    if url is None:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            yield Path(tmp) / "central.db"
        return
    if not is_url(url):
        raise SystemExit(f"--database must be a postgresql:// URL, not {redacted(url)}")
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
