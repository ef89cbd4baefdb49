"""Group commit: batches applied together, each still all or nothing, answered after commit."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from central import db, ingest
from central.clock import iso
from central.ingest_writer import IngestWriter
from tests.till_double import TestTill

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def conn(database):
    c = db.connect(database)
    c.execute("INSERT INTO customers (id, created_at) VALUES ('c1', ?)", (iso(NOW),))
    yield c
    c.close()


def enrolled(conn, name: str) -> TestTill:
    till = TestTill()
    till.till_id = name
    # Enrolled before the double's sales (10:00): a till sells after it enrols.
    conn.execute("INSERT INTO tills (id, name, store, public_key, enrolled_at)"
                 " VALUES (?, ?, 's1', ?, ?)", (name, name, till.public_key,
                                                iso(NOW - timedelta(hours=3))))
    return till


async def test_batches_queued_together_commit_together_and_a_refusal_stays_alone(conn):
    good, bad, later = enrolled(conn, "t1"), enrolled(conn, "t2"), enrolled(conn, "t3")
    for till in (good, bad, later):
        till.sale("c1", earned=10)
        till.sale(None)
    # t2's second entry does not chain on from its first: refused, with an alert.
    bad.entries[1] = dataclasses.replace(bad.entries[1], prev_hash="0" * 64)
    writer = IngestWriter(conn)
    try:
        results = await asyncio.gather(
            *(writer.submit(t.batch(), NOW) for t in (good, bad, later)),
            return_exceptions=True)
    finally:
        await writer.close()
    assert [getattr(r, "acked_seq", None) for r in results] == [2, None, 2]
    assert isinstance(results[1], ingest.BatchRefused) and results[1].status == 422
    held = conn.execute("SELECT till_id, COUNT(*) FROM journal GROUP BY till_id").fetchall()
    assert sorted(map(tuple, held)) == [("t1", 2), ("t3", 2)]
    assert conn.execute("SELECT SUM(points) FROM ledger").fetchone()[0] == 20
    alerts = conn.execute("SELECT till_id, message FROM alerts").fetchall()
    assert [(a[0], "hash chain" in a[1]) for a in alerts] == [("t2", True)]
    assert not conn.in_transaction


async def test_a_repeated_batch_in_the_same_group_changes_nothing(conn):
    till = enrolled(conn, "t1")
    till.sale("c1", earned=10)
    writer = IngestWriter(conn)
    try:
        first, again = await asyncio.gather(writer.submit(till.batch(), NOW),
                                            writer.submit(till.batch(), NOW))
    finally:
        await writer.close()
    assert (first.acked_seq, first.applied) == (1, 1)
    assert (again.acked_seq, again.applied) == (1, 0)
    assert conn.execute("SELECT SUM(points) FROM ledger").fetchone()[0] == 10
