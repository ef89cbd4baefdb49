"""The ingest benchmark runs on either database and counts what it ingested (tiny sizes: the
figures themselves are measured by `python -m bench.ingest`, not here)."""

from __future__ import annotations

import pytest

from bench import ingest
from bench.scratch_database import scratch_database
from tests.databases import SERVER, require_postgres


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_ingest_bench_holds_every_receipt_on_each_database(kind):
    if kind == "postgresql":
        require_postgres()
    url = SERVER if kind == "postgresql" else None
    got = ingest.throughput(tills=4, per_till=6, batch=4, customers=20, seed=3, database=url)
    assert got["receipts"] == 24 and got["batches"] == 4 * 2
    assert got["receipts_per_s"] > 0
    assert got["durability"].startswith(
        "synchronous_commit=" if kind == "postgresql" else "wal, synchronous=")


def test_the_bench_leaves_no_schema_behind_and_refuses_a_path():
    require_postgres()
    import psycopg

    with scratch_database(SERVER) as url:
        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(url) as c:
            assert c.execute("SHOW search_path").fetchone()[0] == schema
    with psycopg.connect(SERVER) as c:
        assert c.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                         (schema,)).fetchone() is None
    with pytest.raises(SystemExit, match="postgresql://"), scratch_database("/tmp/x.db"):
        pass
