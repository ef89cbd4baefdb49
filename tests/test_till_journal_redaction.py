"""The till's own journal forgets personal values once the central holds them (issue 9,
part 6): a sale journalled in the format of an earlier till, with the customer's full
birthday, at a real till (the POS API on its SQLite store) synced to a real central. Once
acknowledged, the till's file holds no birthday, its chain's links verify, and the sale can
still be returned; before, the entry keeps the exact bytes it signed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent import journal
from agent.central_client import CentralClient
from agent.service import Agent
from agent.store import open_store, set_meta
from agent.sync import SyncClient
from protocol.journal import JournalEntry
from protocol.wire import pack, unpack
from tests.pos_rig import Rig
from tests.sync_fixtures import enrol, live_central  # noqa: F401 (a fixture)
from tests.test_personal_data import anna

BIRTHDAY = "1990-11-24"
SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000, "vat": "22"}


def make_old_format(rig: Rig, seq: int) -> None:
    """Rewrite the journal's last entry as a till of an earlier version journalled it: the
    customer's full birthday in its detail (the tail, so nothing chains to it yet)."""
    assert journal.last(rig.db)[0] == seq
    body = unpack(rig.db.execute("SELECT body FROM journal WHERE seq = ?",
                                 [seq]).fetchone()[0])
    body["detail"]["customer"] = {**body["detail"]["customer"], "birthday": BIRTHDAY}
    e = JournalEntry.from_wire(body)
    e = JournalEntry.from_wire({**body, "hash": e.compute_hash()})
    rig.db.execute("UPDATE journal SET body = ?, hash = ? WHERE seq = ?",
                   [pack(e.to_wire()), e.hash, seq])


def file_bytes(db_path: Path) -> bytes:
    """The store's file and its write-ahead log, after a checkpoint, as a disk holds them."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = db_path.with_name(db_path.name + "-wal")
    return db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def body_of(rig: Rig, seq: int) -> bytes:
    return rig.db.execute("SELECT body FROM journal WHERE seq = ?", [seq]).fetchone()[0]


async def sell(rig: Rig, cid: str) -> dict:
    resp = await rig.client.post("/pos/v1/receipts", headers=rig.auth,
                                 json={"customer_id": cid, "lines": [SOCKS]})
    assert resp.status == 201, await resp.text()
    return await resp.json()


@pytest.fixture
async def synced(rig: Rig, live_central):  # noqa: F811
    cid = await anna(live_central)
    rig.add_customer(cid, "2990000000010")
    client = CentralClient(await enrol(live_central, "s1"), timeout_s=10)
    yield rig, SyncClient(rig.db, client), cid
    await client.close()


async def test_an_acknowledged_birthday_leaves_the_tills_file_and_the_chain_holds(synced):
    rig, sync, cid = synced
    path = rig.dir / "agent.db"
    sold = await sell(rig, cid)
    make_old_format(rig, 1)
    signed = body_of(rig, 1)
    assert BIRTHDAY.encode() in signed and journal.verify(rig.db).ok

    # Not acknowledged yet: nothing is cut, the entry goes with the bytes it signed.
    assert await sync.redact_acknowledged() == 0
    assert body_of(rig, 1) == signed
    sendable, problem = journal.sendable_from(rig.db, 1, 10)
    assert problem is None and sendable[0].hash == JournalEntry.from_wire(unpack(signed)).hash
    assert await sync.push() == 1

    # Acknowledged: the body is redacted, hash and prev_hash as they were.
    stored = rig.db.execute("SELECT body, hash, prev_hash, redacted FROM journal"
                            " WHERE seq = 1").fetchone()
    was = JournalEntry.from_wire(unpack(signed))
    assert (stored[1], stored[2], stored[3]) == (was.hash, was.prev_hash, 1)
    assert unpack(stored[0])["detail"]["customer"]["birthday"] is None
    assert BIRTHDAY.encode() not in file_bytes(path)

    # A second old entry, sold and not yet sent, keeps its bytes until acknowledged.
    await sell(rig, cid)
    make_old_format(rig, 2)
    second = body_of(rig, 2)
    assert await sync.redact_acknowledged() == 0 and body_of(rig, 2) == second
    assert BIRTHDAY.encode() in file_bytes(path)
    report = journal.verify(rig.db)
    assert report.ok and report.entries == 2, report.problems

    # The return of the redacted sale works, and goes to the central with the second sale.
    resp = await rig.client.post("/pos/v1/returns", headers=rig.auth, json={
        "receipt_id": sold["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
    assert resp.status == 201, await resp.text()
    assert await sync.push() == 3
    assert BIRTHDAY.encode() not in file_bytes(path)
    assert rig.db.execute("SELECT seq FROM journal WHERE redacted = 1").fetchall() == [(1,),
                                                                                       (2,)]
    report = journal.verify(rig.db)
    assert report.ok and report.entries == 3, report.problems
    back = journal.entries_from(rig.db, 3, 1)[0]
    assert back.kind == "return" and back.original_receipt_id == sold["receipt_id"]

    # Links are still checked: a redacted entry that no longer chains is found.
    rig.db.execute("UPDATE journal SET prev_hash = ? WHERE seq = 2", ["0" * 64])
    body = unpack(body_of(rig, 2))
    rig.db.execute("UPDATE journal SET body = ? WHERE seq = 2",
                   [pack({**body, "prev_hash": "0" * 64})])
    assert "entry 2: does not chain to the entry before it" in journal.verify(rig.db).problems

    # Never resent: a central that lost what it acknowledged gets no redacted body.
    sendable, problem = journal.sendable_from(rig.db, 1, 10)
    assert sendable == [] and problem is not None and "entry 1" in problem


def old_entry(db, n: int) -> None:
    """Entry n of a till of an earlier version, straight through the agent's journal API."""
    with db.atomic():
        journal.append(db, JournalEntry(
            seq=0, epoch="", prev_hash="", kind="sale", receipt_id=f"r{n:04d}",
            at="2026-11-01T10:00:00+00:00", store="s1", customer_id=f"c{n}",
            ruleset_version=1, total=100, fiscal_doc=n,
            detail={"customer": {"id": f"c{n}", "birthday": BIRTHDAY}}))


def test_redaction_goes_in_bounded_steps_and_once_over_each_entry(tmp_path: Path):
    db = open_store(tmp_path / "agent.db")
    for n in range(1, 8):
        old_entry(db, n)
    assert journal.redact_acknowledged(db, 5, page=2) == (2, True)
    assert journal.redact_acknowledged(db, 5, page=2) == (2, True)
    assert journal.redact_acknowledged(db, 5, page=2) == (1, False)
    assert journal.redact_acknowledged(db, 5, page=2) == (0, False)
    redacted = [r[0] for r in db.execute("SELECT seq FROM journal WHERE redacted = 1")]
    assert redacted == [1, 2, 3, 4, 5]
    assert all(BIRTHDAY.encode() in body_of_db(db, s) for s in (6, 7))
    assert journal.verify(db).ok
    # Reopening the store (the migration applied once) leaves it as it was.
    db.close()
    db = open_store(tmp_path / "agent.db")
    assert journal.verify(db).ok and journal.redact_acknowledged(db, 7) == (2, False)
    db.close()


def body_of_db(db, seq: int) -> bytes:
    return db.execute("SELECT body FROM journal WHERE seq = ?", [seq]).fetchone()[0]


async def test_at_start_up_an_upgraded_till_redacts_in_steps_while_the_pos_is_served(
        tmp_path: Path, monkeypatch):
    # A till whose entries the central acknowledged before this version existed; offline now.
    db = open_store(tmp_path / "agent.db")
    for n in range(1, 51):
        old_entry(db, n)
    set_meta(db, "acked_seq", "40")
    monkeypatch.setattr(journal, "REDACT_PAGE", 5)
    # Offline: the pass never asks the central (the client is never called).
    agent = SimpleNamespace(sync=SyncClient(db, SimpleNamespace()))  # type: ignore[arg-type]
    served = 0

    async def pos() -> None:  # what the event loop serves between steps
        nonlocal served
        while True:
            served += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(pos())
    try:
        await Agent.redact_journal(agent)  # type: ignore[arg-type]
    finally:
        ticking.cancel()
    assert served >= 40 // 5 - 1  # the POS ran between the steps
    redacted = [r[0] for r in db.execute("SELECT seq FROM journal WHERE redacted = 1")]
    assert redacted == list(range(1, 41))
    assert all(BIRTHDAY.encode() in body_of_db(db, s) for s in range(41, 51))
    assert journal.verify(db).ok
    db.close()
