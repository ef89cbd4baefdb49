"""What the sync API gets from a hostile network or a stolen identity, beyond the basic
refusals in test_central_sync_api: oversized batches, another till's name, a forged rule set
served to a till. Each is refused with a clear error and changes nothing."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import journal
from agent.central_client import CentralError
from protocol.batches import MAX_BATCH_ENTRIES, Batch, encode_batch
from protocol.rules import default_ruleset_doc
from protocol.ruleset_wire import SignedRuleSet, encode_ruleset
from tests.sync_fixtures import LocalTill, enrol, live_central
from tests.test_central_sync_api import enrolled_till, rows, send

__all__ = ["live_central"]


async def test_batches_beyond_the_bounds_are_refused_whole(central):
    till = await enrolled_till(central)
    for _ in range(MAX_BATCH_ENTRIES + 1):
        till.sale(None)
    resp = await send(central, till.batch())
    assert resp.status == 400
    assert f"more than {MAX_BATCH_ENTRIES} entries" in (await resp.json())["error"]
    # One entry padded past every limit: refused by size before anything is decoded.
    big = dataclasses.replace(till.entries[0], detail={"pad": "x" * (5 * 1024 * 1024)})
    resp = await send(central, till.batch(entries=[big]))
    assert resp.status == 413
    assert "too large" in (await resp.json())["error"].lower()
    medium = dataclasses.replace(till.entries[0], detail={"pad": "x" * (3 * 1024 * 1024 + 10)})
    resp = await send(central, till.batch(entries=[medium]))
    assert resp.status == 400 and "exceeds" in (await resp.json())["error"]
    assert rows(central, "journal") == 0


async def test_a_batch_in_another_tills_name_is_refused_as_a_bad_signature(central):
    victim = await enrolled_till(central)
    thief = await enrolled_till(central)
    thief.sale(None)
    forged = encode_batch(thief.key, Batch(victim.till_id, thief.epoch, tuple(thief.entries),
                                           "2026-11-23T10:00:00+00:00"))
    resp = await send(central, forged)
    assert resp.status == 401 and "signature" in (await resp.json())["error"]
    assert rows(central, "journal") == 0
    alert = central.db.execute("SELECT kind, till_id FROM alerts").fetchone()
    assert tuple(alert) == ("security", victim.till_id)


async def test_a_replayed_batch_after_more_entries_changes_nothing(central):
    till = await enrolled_till(central)
    till.sale(None)
    first = till.batch()
    await send(central, first)
    till.sale(None)
    await send(central, till.batch(2, 2))
    resp = await send(central, first)  # captured and sent again later
    assert resp.status == 200 and (await resp.json())["acked_seq"] == 2
    assert rows(central, "journal") == 2


async def test_the_till_refuses_a_rule_set_not_signed_by_its_central(live_central, tmp_path):
    ident = await enrol(live_central)
    till = LocalTill(ident, tmp_path / "agent.db")
    try:
        assert await till.sync.pull_ruleset() == 1  # the real one
        # Someone between the till and the central serves their own rule set.
        forger = Ed25519PrivateKey.generate()
        doc = {**default_ruleset_doc(), "version": 2}
        blob = encode_ruleset(forger, SignedRuleSet(2, "2026-01-01T00:00:00+00:00", doc))

        async def forged_request(method: str, path_qs: str, body: bytes = b"",
                                 content_type: str = "") -> tuple[bytes, str]:
            return blob, "application/msgpack"

        till.client.request = forged_request  # type: ignore[method-assign]
        assert await till.sync.pull_ruleset() is None
        assert "rule set refused: signature does not verify" in (
            till.sync.state.ruleset_refused or "")
        assert till.db.execute("SELECT MAX(version) FROM rulesets").fetchone()[0] == 1
        assert journal.last(till.db)[0] == 0
    finally:
        await till.close()


async def test_a_revoked_till_keeps_its_journal_and_says_so(live_central, tmp_path):
    ident = await enrol(live_central)
    till = LocalTill(ident, tmp_path / "agent.db")
    try:
        till.sell()
        assert await till.sync.push() == 1
        resp = await live_central.post(f"/api/v1/tills/{ident.till_id}/revoke",
                                       headers=live_central.admin)
        assert resp.status == 200
        till.sell()
        with pytest.raises(CentralError, match="revoked"):
            await till.sync.push()
        assert till.sync.state.revoked and till.sync.backing_off()
        assert journal.last(till.db)[0] == 2 and journal.verify(till.db).ok
        assert till.db.execute("SELECT seq FROM outbox").fetchall() == [(2,)]
    finally:
        await till.close()
    again = LocalTill(ident, tmp_path / "agent.db")  # after a restart it still knows
    try:
        assert again.sync.state.revoked
    finally:
        await again.close()
