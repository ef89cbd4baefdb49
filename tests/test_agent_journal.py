"""The till's journal: gapless, chained, verifiable; and the till's view of a balance."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from agent import customers, journal
from agent.store import open_store
from protocol.journal import JournalEntry, genesis_hash
from protocol.wire import pack


@pytest.fixture
def db(tmp_path):
    d = open_store(tmp_path / "agent.db")
    yield d
    d.close()


def draft(customer_id: str | None = None, **kw) -> JournalEntry:
    base = dict(seq=0, epoch="", prev_hash="", kind="sale", receipt_id=f"r{id(kw)}{len(kw)}",
                at="2026-11-23T10:00:00+00:00", store="s1", customer_id=customer_id,
                ruleset_version=1, total=1000, fiscal_doc=1)
    return JournalEntry(**{**base, **kw})


def test_entries_get_gapless_numbers_and_chain_from_the_epoch(db):
    with db.atomic():
        first = journal.append(db, draft(receipt_id="a"))
        second = journal.append(db, draft(receipt_id="b"))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == genesis_hash(journal.epoch(db))
    assert second.prev_hash == first.hash
    assert [r[0] for r in db.execute("SELECT seq FROM outbox")] == [1, 2]
    report = journal.verify(db)
    assert report.ok and report.entries == 2 and report.last_seq == 2


def test_append_outside_a_transaction_is_a_programming_error(db):
    with pytest.raises(AssertionError):
        journal.append(db, draft(receipt_id="a"))


def test_a_failed_receipt_transaction_leaves_no_entry(db):
    with pytest.raises(RuntimeError), db.atomic():
        journal.append(db, draft(receipt_id="a"))
        raise RuntimeError("printer said no")
    assert journal.last(db)[0] == 0
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0


def test_verify_finds_edits_gaps_and_broken_links(db):
    with db.atomic():
        for r in "abcd":
            journal.append(db, draft(receipt_id=r))
    body = JournalEntry(**{**journal.entries_from(db, 2, 1)[0].to_wire(), "total": 1})
    db.execute("UPDATE journal SET body = ? WHERE seq = 2", [pack(body.to_wire())])
    db.execute("DELETE FROM journal WHERE seq = 3")
    problems = journal.verify(db).problems
    assert any("entry 2: content does not match" in p for p in problems)
    assert any("gap: expected entry 3, found 4" in p for p in problems)
    assert any("entry 4: does not chain" in p for p in problems)


def test_journal_verify_command_exits_non_zero_on_a_damaged_journal(tmp_path, db):
    with db.atomic():
        journal.append(db, draft(receipt_id="a"))
    ok = subprocess.run([sys.executable, "-m", "tillpoint", "agent", "journal", "verify",
                         "--state", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and '"ok": true' in ok.stdout
    db.execute("UPDATE journal SET hash = 'x' WHERE seq = 1")
    bad = subprocess.run([sys.executable, "-m", "tillpoint", "agent", "journal", "verify",
                          "--state", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and '"ok": false' in bad.stdout


def test_balance_view_is_the_centrals_word_plus_unsynced_entries(db):
    with db.atomic():
        journal.append(db, draft("c1", receipt_id="a", earned=30, lots=[
            {"points": 30, "activates": "2026-12-07", "expires": "2027-12-07"}]))
    customers.apply_deltas(db, {"cursor": 5, "epoch": journal.epoch(db), "acked_seq": 1,
                                "customers": [{"id": "c1", "cards": ["ct_x"], "tier": None,
                                               "segments": [], "available": 400,
                                               "pending": 30, "debt": 0}]})
    with db.atomic():
        journal.append(db, draft("c1", receipt_id="b", redeemed=100))
        journal.append(db, draft("c1", kind="return", receipt_id="c", refund=40,
                                 clawback=10, original_receipt_id="b"))
    view = customers.view(db, "c1")
    assert view is not None
    # Entry 1 is in the central's figures already; entries 2 and 3 are not.
    assert (view.available, view.pending) == (400 - 100 + 40, 30 - 10)
    assert customers.by_token(db, "ct_x") == "c1"


def test_a_new_database_is_a_new_epoch(tmp_path):
    a = open_store(tmp_path / "a.db")
    b = open_store(tmp_path / "b.db")
    try:
        assert journal.epoch(a) != journal.epoch(b)
    finally:
        a.close()
        b.close()


def test_entry_dataclass_replace_keeps_hash_honest(db):
    with db.atomic():
        e = journal.append(db, draft(receipt_id="a"))
    assert dataclasses.replace(e, total=5).compute_hash() != e.hash
