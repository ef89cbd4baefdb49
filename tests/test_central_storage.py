"""The central's storage seam: migrations under a lock, the ingest sequence its followers
read in, and followers that run once however many processes try."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from central import campaign_budgets, db, ingest_log, repricing
from central.db_sqlite import SQLiteConnection
from protocol.rules import default_ruleset_doc
from protocol.wire import pack
from tests.databases import postgres_schema

MIGRATE = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
from central import db
db.connect(sys.argv[1]).close()
"""


def test_processes_migrating_a_new_database_at_once_migrate_it_once(tmp_path: Path,
                                                                     database: Path | str):
    target, go = database, tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, str(target), str(go)],
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(0.5)  # let the interpreters start: they then wait for the same instant
    go.touch()
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    conn = db.connect(target)
    assert conn.dialect.schema_version(conn) == len(db.MIGRATIONS)
    assert db.migrate(conn) == 0  # nothing left to do


def _journal(conn: db.Connection, till: str, seq: int, body: dict) -> None:
    conn.execute("INSERT INTO journal (till_id, epoch, seq, hash, prev_hash, kind, receipt_id,"
                 " customer_id, body, received_at) VALUES (?, 'ep', ?, '', '', ?, ?, ?, ?, '')",
                 (till, seq, body["kind"], f"{till}-{seq}", body.get("customer_id"),
                  pack(body)))


def _sale(version: int, campaign_points: int) -> dict:
    return {"kind": "sale", "at": "2026-11-23T10:00:00+00:00", "customer_id": None,
            "ruleset_version": version,
            "detail": {"settlement": {"campaign_totals": {"promo": campaign_points}}}}


def _budgeted(database: Path | str) -> tuple[db.Connection, int]:
    from datetime import UTC, datetime

    from central import rulesets

    conn = db.connect(database)
    doc = default_ruleset_doc()
    doc["campaigns"].append({"id": "promo", "priority": 5,
                             "effect": {"type": "per_receipt", "points": 60},
                             "budget": {"total": 100000}})
    version = rulesets.publish(conn, doc, "test", datetime(2026, 11, 23, tzinfo=UTC))
    return conn, version


def test_followers_read_in_the_order_ingest_committed_not_the_order_rows_were_written(
        database: Path | str):
    conn, v = _budgeted(database)
    # Till a's entry was written first but its transaction committed last: the follower
    # that has seen b's must still see a's.
    _journal(conn, "a", 1, _sale(v, 1))
    _journal(conn, "b", 1, _sale(v, 10))
    assert ingest_log.record(conn, [("b", "ep", 1, 1)]) == 1
    page = ingest_log.entries_after(conn, 0, 100, "j.till_id, j.seq")
    assert [tuple(r) for r in page.rows] == [("b", 1)] and page.upto == 1
    assert ingest_log.record(conn, [("a", "ep", 1, 1)]) == 2
    page = ingest_log.entries_after(conn, page.upto, 100, "j.till_id, j.seq")
    assert [tuple(r) for r in page.rows] == [("a", 1)] and page.upto == 2
    assert campaign_budgets.account_pending(conn) == 2
    assert conn.execute("SELECT used FROM campaign_usage").fetchone()[0] == 11


def test_pages_end_on_whole_batches(database: Path | str):
    conn, v = _budgeted(database)
    for seq in range(1, 6):
        _journal(conn, "a", seq, _sale(v, 1))
    ingest_log.record(conn, [("a", "ep", 1, 3), ("a", "ep", 4, 5)])
    page = ingest_log.entries_after(conn, 0, 2, "j.seq")
    assert [r[0] for r in page.rows] == [1, 2, 3] and page.upto == 1  # one batch, whole
    page = ingest_log.entries_after(conn, 0, 5, "j.seq")
    assert [r[0] for r in page.rows] == [1, 2, 3, 4, 5] and page.upto == 2
    assert ingest_log.entries_behind(conn, 1) == 2


def test_a_follower_that_another_process_overtook_counts_nothing_twice(database: Path | str,
                                                                        monkeypatch):
    conn, v = _budgeted(database)
    other = db.connect(database)  # a second process's connection
    for seq in range(1, 4):
        _journal(conn, "a", seq, _sale(v, 5))
    ingest_log.record(conn, [("a", "ep", 1, 3)])
    read = ingest_log.entries_after
    overtaken = []

    def read_then_overtaken(c, *args):
        page = read(c, *args)
        if c is conn and not overtaken:
            overtaken.append(campaign_budgets.account_pending(other))  # it wins the race
        return page

    monkeypatch.setattr(ingest_log, "entries_after", read_then_overtaken)
    assert campaign_budgets.account_pending(conn) == 0
    assert overtaken == [3]
    assert conn.execute("SELECT used FROM campaign_usage").fetchone()[0] == 15  # once
    assert campaign_budgets.behind(conn) == 0
    # Re-pricing claims its cursor the same way.
    monkeypatch.setattr(ingest_log, "entries_after", read)
    start = conn.execute("SELECT ingest_seq FROM repricing").fetchone()[0]
    assert ingest_log.claim(other, "repricing", "journal", start, 1)
    assert repricing.reprice_pending(conn, _now()) == 0
    other.close()
    conn.close()


def _now():
    from datetime import UTC, datetime

    return datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_an_existing_database_keeps_its_followers_where_they_were(tmp_path: Path):
    """Migration 13 numbers entries already held by their rowid: followers resume there."""
    conn = SQLiteConnection(tmp_path / "old.db")
    for number, step in enumerate(db.MIGRATIONS[:12], start=1):
        with conn.transaction():
            for statement in conn.dialect.script(step).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.dialect.set_schema_version(conn, number, "")
    for seq in range(1, 4):
        _journal(conn, "a", seq, {"kind": "sale"})
    conn.execute("UPDATE repricing SET last_rowid = 1")
    conn.execute("UPDATE budget_accounting SET last_rowid = 2")
    assert db.migrate(conn) == len(db.MIGRATIONS) - 12
    assert repricing.progress(conn)["behind"] == 2
    assert campaign_budgets.behind(conn) == 1
    assert ingest_log.record(conn, [("a", "ep", 4, 4)]) == 4  # numbering carries on
    conn.close()


def test_a_number_is_taken_only_after_the_one_before_it_committed():
    """On PostgreSQL, transactions commit in any order: a second ingest transaction waits
    for the first's number to commit before taking the next, so a follower never sees 2
    without 1 (and a rolled-back number is taken again: no gaps)."""
    with postgres_schema() as url:
        first, second, follower = db.connect(url), db.connect(url), db.connect(url)
        try:
            _numbered_in_commit_order(first, second, follower)
        finally:
            for c in (first, second, follower):
                c.close()


def _numbered_in_commit_order(first: db.Connection, second: db.Connection,
                              follower: db.Connection) -> None:
    for till in ("a", "b", "c"):
        _journal(first, till, 1, {"kind": "sale"})
    second_took: list[int] = []
    with first.transaction():
        assert ingest_log.record(first, [("a", "ep", 1, 1)]) == 1
        pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]

        def later_transaction() -> None:
            with second.transaction():
                second_took.append(ingest_log.record(second, [("b", "ep", 1, 1)]))

        thread = threading.Thread(target=later_transaction)
        thread.start()
        # Until the second transaction waits on the first's lock of the counter.
        deadline = time.monotonic() + 30
        while not follower.execute(
                "SELECT 1 FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))",
                (pid,)).fetchone():
            assert time.monotonic() < deadline, "the second transaction never waited"
            time.sleep(0.01)
        assert second_took == []
        assert ingest_log.entries_after(follower, 0, 10, "j.till_id").rows == []
    thread.join(timeout=30)
    assert second_took == [2]
    page = ingest_log.entries_after(follower, 0, 10, "j.till_id")
    assert [r[0] for r in page.rows] == ["a", "b"]
    # A number whose transaction rolled back is taken again.
    try:
        with first.transaction():
            assert ingest_log.record(first, [("c", "ep", 1, 1)]) == 3
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert ingest_log.record(second, [("c", "ep", 1, 1)]) == 3


def test_a_customer_locked_by_one_transaction_waits_for_it_in_another():
    """What keeps two processes from spending one customer's lots at once (ingest,
    re-pricing and head office lock the customers they change, in id order)."""
    from central import ledger

    with postgres_schema() as url:
        first, second, watcher = db.connect(url), db.connect(url), db.connect(url)
        try:
            first.execute("INSERT INTO customers (id, created_at) VALUES ('c1', ''), ('c2', '')")
            locked: list[str] = []
            with first.transaction():
                ledger.lock_customers(first, ["c2", "c1"])
                pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]

                def spend() -> None:
                    with second.transaction():
                        ledger.lock_customers(second, ["c1"])
                        locked.append("c1")

                thread = threading.Thread(target=spend)
                thread.start()
                deadline = time.monotonic() + 30
                while not watcher.execute(
                        "SELECT 1 FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))",
                        (pid,)).fetchone():
                    assert time.monotonic() < deadline, "the second never waited"
                    time.sleep(0.01)
                assert locked == []
            thread.join(timeout=30)
            assert locked == ["c1"]
        finally:
            for c in (first, second, watcher):
                c.close()


def _marks(conn: db.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT id, change_seq FROM customers").fetchall())


def test_customers_are_marked_changed_at_the_commit_once_each(database: Path | str):
    """Tills pull changes in the order of the marks: a transaction takes them at its end,
    each customer once however often it was touched, and none if it rolled back."""
    from central import ledger

    conn = db.connect(database)
    try:
        conn.execute("INSERT INTO customers (id, created_at) VALUES ('c1', ''), ('c2', ''),"
                     " ('c3', '')")
        ledger.touch(conn, "c3")  # outside a transaction: a transaction of its own
        assert _marks(conn) == {"c1": 0, "c2": 0, "c3": 1}
        with conn.transaction():
            ledger.touch(conn, "c2")
            ledger.touch_many(conn, ["c1", "c2"])
            assert _marks(conn) == {"c1": 0, "c2": 0, "c3": 1}  # not yet
        assert _marks(conn) == {"c1": 2, "c2": 3, "c3": 1}  # in id order, once each
        try:
            with conn.transaction():
                ledger.touch(conn, "c1")
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        assert _marks(conn) == {"c1": 2, "c2": 3, "c3": 1}
        with conn.transaction():
            ledger.touch(conn, "c3")
        assert _marks(conn)["c3"] == 4  # nothing was taken by the rolled-back one
    finally:
        conn.close()


def test_a_transaction_that_touched_a_customer_does_not_hold_up_another():
    """Several central processes ingest at once: one ingest transaction touching its
    customers does not make another wait on the change counter until it commits; the marks
    still come out in the order of the commits."""
    from central import ledger

    with postgres_schema() as url:
        first, second = db.connect(url), db.connect(url)
        try:
            first.execute("INSERT INTO customers (id, created_at) VALUES ('c1', ''), ('c2', '')")
            done = threading.Event()
            with first.transaction():
                ledger.touch(first, "c1")

                def other() -> None:
                    with second.transaction():
                        ledger.touch(second, "c2")
                    done.set()

                thread = threading.Thread(target=other)
                thread.start()
                assert done.wait(30), "the second transaction waited for the first"
            thread.join(timeout=30)
            assert _marks(second) == {"c2": 1, "c1": 2}  # committed first, marked first
        finally:
            for c in (first, second):
                c.close()
