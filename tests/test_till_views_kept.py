"""Which views of a customer the central keeps per till (central.deliveries.record_views):
the newest VIEWS_CONSIDERED always, older ones for VIEWS_KEPT_FOR, pruned a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from central import db, deliveries
from central.clock import iso
from central.deliveries import VIEWS_CONSIDERED, VIEWS_KEPT_FOR

START = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def views(conn: db.Connection, till_id: str, customer_id: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT delivered_at FROM till_views WHERE till_id = ? AND customer_id = ? ORDER BY id",
        (till_id, customer_id))]


def test_old_views_beyond_the_newest_few_are_pruned_per_till_and_customer(
        database: Path | str) -> None:
    conn = db.connect(database)
    try:
        # Customer "busy" is sent to till-1 daily for 40 days; "quiet" once, on day 0;
        # till-2 receives "busy" once on day 0 only.
        with conn.transaction():
            deliveries.record_views(conn, "till-2", [{"id": "busy"}], START)
        days = 40
        for day in range(days):
            sent = [{"id": "busy"}] + ([{"id": "quiet"}] if day == 0 else [])
            with conn.transaction():
                deliveries.record_views(conn, "till-1", sent, START + timedelta(days=day))
        now = START + timedelta(days=days - 1)
        kept = views(conn, "till-1", "busy")
        # Everything within VIEWS_KEPT_FOR of the last delivery, and nothing older, since more
        # than VIEWS_CONSIDERED are that recent.
        recent = [d for d in range(days) if START + timedelta(days=d) >= now - VIEWS_KEPT_FOR]
        assert len(recent) > VIEWS_CONSIDERED
        assert kept == [iso(START + timedelta(days=d)) for d in recent]
        # A customer sent once keeps that view however old; another till's are its own.
        assert len(views(conn, "till-1", "quiet")) == 1
        assert len(views(conn, "till-2", "busy")) == 1
    finally:
        conn.close()


def test_a_customer_sent_rarely_keeps_the_newest_few_however_old(
        database: Path | str) -> None:
    conn = db.connect(database)
    try:
        sent_on = [START + timedelta(days=60 * i) for i in range(VIEWS_CONSIDERED + 3)]
        for at in sent_on:
            with conn.transaction():
                deliveries.record_views(conn, "till-1", [{"id": "rare"}], at)
        assert views(conn, "till-1", "rare") == [iso(at) for at in
                                                 sent_on[-VIEWS_CONSIDERED:]]
    finally:
        conn.close()
