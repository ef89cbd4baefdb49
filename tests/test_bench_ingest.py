"""The ingest benchmark runs on either database and counts what it ingested (tiny sizes: the
figures themselves are measured by `python -m bench.ingest`, not here)."""

from __future__ import annotations

import pytest

from bench import ingest
from bench.fanout import fanout
from bench.ingest_http import through_http
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


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_the_ingest_bench_runs_the_followers_and_they_repriced_every_sale(mode):
    got = ingest.throughput(tills=3, per_till=4, batch=4, customers=10, seed=5,
                            followers_mode=mode)
    assert got["followers"] == mode and got["receipts"] == 12
    # The tills' views were delivered, so every member's sale re-priced as the till did.
    assert got["repricing_mismatches"] == 0
    assert 0 <= got["repricing_behind_at_end"] <= 12 and got["followers_caught_up_s"] >= 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_fanout_bench_serves_every_change_to_every_till(kind):
    if kind == "postgresql":
        require_postgres()
    got = fanout(members=300, tills=20, pulls=3, database=SERVER if kind == "postgresql"
                 else None)
    # 20 tills, a receipt a minute each, 60 % members: 6 customers changed per 30 s pull
    # (fanout() checks each pull carried all of them).
    assert got["changed_per_pull"] == 6 and got["pulls_timed"] == 3
    assert got["pull_cpu_ms"] > 0 and got["central_cores_for_fanout"] >= 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_http_ingest_bench_posts_through_running_centrals_and_holds_every_receipt(kind):
    if kind == "postgresql":
        require_postgres()
    got = through_http(tills=5, per_till=6, batch=4, customers=20, seed=3,
                       database=SERVER if kind == "postgresql" else None)
    # Two processes on PostgreSQL, each till's batches alternating between them.
    assert got["receipts"] == 30 and got["batches"] == 5 * 2
    assert got["processes"] == (2 if kind == "postgresql" else 1)
    assert len(got["central_cpu_s"]) == got["processes"] and got["receipts_per_s"] > 0


def test_the_http_ingest_bench_refuses_several_processes_on_sqlite():
    with pytest.raises(SystemExit, match="--database"):
        through_http(tills=1, per_till=1, batch=1, customers=1, seed=1, processes=2)
