"""A till holding a version receives only what changed (protocol.ruleset_delta) when a
campaign is edited, rebuilds byte for byte the document the central signed, and fetches
the whole document when its copy of the base does not rebuild it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.rules import ruleset_doc
from central import rulesets, staff
from protocol import ruleset_delta
from protocol.wire import pack
from tests.sync_fixtures import LocalTill, enrol, live_central  # noqa: F401


def recording(till: LocalTill) -> list[tuple[str, str, int]]:
    sent: list[tuple[str, str, int]] = []
    real = till.client.request

    async def request(method, path, *a, **kw):
        data, ctype = await real(method, path, *a, **kw)
        sent.append((path, ctype, len(data)))
        return data, ctype

    till.client.request = request  # type: ignore[method-assign]
    return sent


async def edit(central, cid: str, version: int, priority: int) -> None:
    _, tok = staff.add(central.db, central.secrets.staff_token_key, f"m{priority}",
                       "marketing", "test", datetime.now(UTC))
    resp = await central.patch(f"/api/v1/campaigns/{cid}",
                               headers={"Authorization": f"Bearer {tok}"},
                               json={"version": version, "priority": priority})
    assert resp.status == 200, await resp.text()


async def test_an_edited_campaign_reaches_the_till_as_a_small_delta(
        live_central, tmp_path: Path):  # noqa: F811
    rulesets.publish(live_central.db, ruleset_doc(2000, seed=3), "olga", datetime.now(UTC))
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    try:
        sent = recording(till)
        first = await till.sync.pull_ruleset()
        full = sent[-1][2]
        await edit(live_central, "c00017", 1, 777)
        assert await till.sync.pull_ruleset() == first + 1
        path, ctype, size = sent[-1]
        assert path == f"/sync/v1/ruleset?have={first}&delta=1"
        assert ctype == ruleset_delta.CONTENT_TYPE and size * 20 < full
        # What the till holds and prices with is the document the central signed.
        newest = rulesets.current(live_central.db)
        assert till.sync.rules.stored(first + 1) == pack(newest.doc)
        version, rs = till.sync.rules.get()
        assert version == first + 1
        assert rs.campaigns[rs.by_id["c00017"]].priority == 777
        assert await till.sync.pull_ruleset() == first + 1  # and then: not modified
        assert sent[-1][2] == 0
    finally:
        await till.close()


async def test_a_base_that_does_not_rebuild_it_is_fetched_whole(
        live_central, tmp_path: Path):  # noqa: F811
    rulesets.publish(live_central.db, ruleset_doc(500, seed=4), "olga", datetime.now(UTC))
    till = LocalTill(await enrol(live_central), tmp_path / "till.db")
    try:
        sent = recording(till)
        first = await till.sync.pull_ruleset()
        # The till's copy of its version is not what the central sent (a disk's damage).
        other = {**ruleset_doc(500, seed=5), "version": first}
        till.db.execute("UPDATE rulesets SET doc = ? WHERE version = ?", [pack(other), first])
        await edit(live_central, "c00002", 1, 555)
        assert await till.sync.pull_ruleset() == first + 1
        assert [(p, c == ruleset_delta.CONTENT_TYPE) for p, c, _ in sent[-2:]] == [
            (f"/sync/v1/ruleset?have={first}&delta=1", True), ("/sync/v1/ruleset?have=0", False)]
        assert till.sync.rules.stored(first + 1) == pack(rulesets.current(live_central.db).doc)
        assert till.sync.state.ruleset_refused is None
    finally:
        await till.close()
