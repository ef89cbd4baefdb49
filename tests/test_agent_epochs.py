"""A till restored from a backup goes on in a new epoch: no sequence number is used twice, no
alarm is raised, and receipts sold after the restore still reach the central."""

from __future__ import annotations

import shutil

from agent import journal
from tests.sync_fixtures import LocalTill, enrol, live_central

central = live_central  # the fixture these tests call `central`


def held(central, till_id: str) -> list[tuple[str, int]]:
    # In the order the central took them in (central.ingest_log).
    return [(r["epoch"], r["seq"]) for r in central.db.execute(
        "SELECT j.epoch, j.seq FROM ingest_log l JOIN journal j ON j.till_id = l.till_id"
        " AND j.epoch = l.epoch AND j.seq BETWEEN l.first_seq AND l.last_seq"
        " WHERE l.till_id = ? ORDER BY l.ingest_seq, j.seq", (till_id,))]


def alerts(central) -> list[str]:
    return [r["kind"] for r in central.db.execute("SELECT kind FROM alerts")]


async def test_restored_database_starts_a_new_epoch_and_carries_later_sales(central, tmp_path):
    ident = await enrol(central)
    till = LocalTill(ident, tmp_path / "agent.db")
    for _ in range(3):
        till.sell()
    assert await till.sync.push() == 3
    till.backup(tmp_path / "backup.db")
    till.sell()
    till.sell()
    assert await till.sync.push() == 5
    old_epoch = journal.epoch(till.db)
    await till.close()

    shutil.copy(tmp_path / "backup.db", tmp_path / "agent.db")
    restored = LocalTill(ident, tmp_path / "agent.db")
    try:
        # Sold after the restore, before the till reached the central: seq 4 once more.
        late = restored.sell()
        assert (late.epoch, late.seq) == (old_epoch, 4)
        assert await restored.sync.push() == 1
        new_epoch = journal.epoch(restored.db)
        assert new_epoch != old_epoch
        assert held(central, ident.till_id) == [(old_epoch, s) for s in range(1, 6)] + [
            (new_epoch, 1)]
        moved = journal.entries_from(restored.db, 1, 10)
        assert [e.receipt_id for e in moved] == [late.receipt_id]
        assert alerts(central) == []  # a restore is not an attack
        report = journal.verify(restored.db)
        assert report.ok, report.problems
        assert [(e["entries"], e["last_seq"]) for e in report.epochs] == [(4, 4), (1, 1)]
        assert restored.sell().seq == 2  # and it goes on from there
        assert await restored.sync.push() == 2
        assert restored.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    finally:
        await restored.close()


async def test_restore_without_new_sales_carries_nothing(central, tmp_path):
    ident = await enrol(central)
    till = LocalTill(ident, tmp_path / "agent.db")
    till.sell()
    await till.sync.push()
    till.backup(tmp_path / "backup.db")
    till.sell()
    await till.sync.push()
    await till.close()
    shutil.copy(tmp_path / "backup.db", tmp_path / "agent.db")
    restored = LocalTill(ident, tmp_path / "agent.db")
    try:
        assert await restored.sync.push() == 0
        assert journal.last(restored.db)[0] == 0
        assert restored.sell().seq == 1
        assert await restored.sync.push() == 1
        assert len(held(central, ident.till_id)) == 3 and alerts(central) == []
    finally:
        await restored.close()


async def test_a_lost_answer_is_recovered_from_the_centrals_position(central, tmp_path):
    ident = await enrol(central)
    till = LocalTill(ident, tmp_path / "agent.db")
    try:
        till.sell()
        till.sell()
        await till.sync.push()
        # As if the central's answer had been lost: the till still thinks nothing is acked.
        till.db.execute("UPDATE meta SET value = '0' WHERE key = 'acked_seq'")
        till.sync.position_checked = False
        assert await till.sync.push() == 2
        assert journal.epoch(till.db) == held(central, ident.till_id)[0][0]
    finally:
        await till.close()
