"""A journal entry that does not fit the schema (issue 9, part 3): the central refuses its
batch with a 4xx naming the field and one alert per till, the till holds the batch and says
so instead of sending it every few seconds, and re-pricing never stops on one entry."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from agent import journal
from agent.central_client import CentralError
from central import repricing
from protocol.journal import JournalEntry
from protocol.wire import pack
from tests.sync_fixtures import LocalTill, enrol, live_central
from tests.test_central_sync_api import enrolled_till, new_customer, send
from tests.test_sync_outage import FakeMonotonic
from tests.test_till_takeover import pull, sale, sent_view

__all__ = ["live_central"]


def bent(till, **fields) -> None:
    """The till's last entry with `fields` changed, signed and chained as its own."""
    e = dataclasses.replace(till.entries[-1], **fields)
    till.entries[-1] = dataclasses.replace(e, hash=e.compute_hash())


def refusals(central, till_id: str) -> list[dict]:
    return [dict(r) for r in central.db.execute(
        "SELECT severity, count, message FROM alerts WHERE kind = 'entry-refused'"
        " AND till_id = ?", (till_id,))]


@pytest.mark.parametrize(("fields", "named"), [
    ({"total": 2**64 - 1}, "'total'"),
    ({"redeemed": 2**63}, "'redeemed'"),
    ({"ruleset_version": 2**60}, "'ruleset_version'"),
    ({"at": "yesterday"}, "'at'"),
    ({"at": "0001-01-01T00:00:00+14:00"}, "'at'"),
    ({"store": "s" * 1000}, "'store'"),
    ({"earned": 5, "lots": [{"points": 5, "activates": "soon", "expires": "never"}]},
     "'lots[0].activates'"),
])
async def test_an_entry_out_of_its_schema_is_a_422_naming_the_field_with_one_alert(
        central, fields, named):
    till = await enrolled_till(central)
    till.sale(None)
    till.sale(None)
    bent(till, **fields)
    for _ in range(3):
        resp = await send(central, till.batch())
        assert resp.status == 422, await resp.text()
        error = (await resp.json())["error"]
        assert "entry 2" in error and named in error, error
    # Nothing of the batch is held: the till sends it again from entry 1 once it can.
    assert central.db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    alerts = refusals(central, till.till_id)
    assert len(alerts) == 1 and alerts[0]["count"] == 3 and alerts[0]["severity"] == "critical"
    assert named in alerts[0]["message"]


async def test_a_bad_signature_with_a_bad_entry_is_no_entry_alert(central):
    """Only a batch the till signed speaks for the till: a forged one is an authentication
    failure, counted per source, and names no entry."""
    till = await enrolled_till(central)
    till.sale(None)
    bent(till, total=2**64 - 1)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    resp = await send(central, till.batch(key=Ed25519PrivateKey.generate()))
    assert resp.status == 401
    assert refusals(central, till.till_id) == []


async def test_the_till_holds_a_refused_batch_says_so_and_offers_it_rarely(
        live_central, tmp_path):
    central = live_central
    ident = await enrol(central)
    mono = FakeMonotonic()
    till = LocalTill(ident, tmp_path / "agent.db", monotonic=mono, held_retry_s=900)
    sent = 0
    real_request = till.client.request

    async def counted(method, path, data=b""):  # as CentralClient.request
        nonlocal sent
        sent += path == "/sync/v1/batches"
        return await real_request(method, path, data)

    till.client.request = counted  # type: ignore[method-assign]
    try:
        till.sell()
        with till.db.atomic():  # what an agent with a bug might journal
            journal.append(till.db, JournalEntry(
                seq=0, epoch="", prev_hash="", kind="sale", receipt_id="r-bad",
                at="2026-11-23 10:00 MSK", store=ident.store, customer_id=None,
                ruleset_version=1, total=100, fiscal_doc=0))
        till.sell()
        # The entry before the bad one goes; the bad one is held, not sent in a loop.
        with pytest.raises(CentralError, match=r"entry 2.*'at'"):
            await till.sync.push()
        assert till.sync.acked_seq() == 1 and sent == 1
        held = till.sync.state.push_held
        assert held["first_seq"] == 2 and "'at'" in held["reason"]
        for _ in range(20):  # the push job's schedule: nothing goes, nothing backs off
            assert await till.sync.push() == 1
        assert sent == 1 and not till.sync.backing_off() and till.sync.state.failures == 0
        assert await till.sync.pull_customers() == 0  # pulls go on
        assert till.sync.state.to_dict()["push_held"] == held
    finally:
        await till.close()
    again = LocalTill(ident, tmp_path / "agent.db")  # a restart still says so
    try:
        assert again.sync.state.push_held == held
    finally:
        await again.close()
    # And `tillpoint agent status` says so with the agent stopped (from its database).
    out = subprocess.run([sys.executable, "-m", "tillpoint", "agent", "status", "--state",
                          str(tmp_path), "--pos-port", "1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout)["push_held"] == held


async def test_the_till_holds_a_batch_the_central_refuses(live_central, tmp_path):
    """The central's word is final even where the till's own check passed (a central that
    checks more than an older agent): 422 holds, a later acceptance releases."""
    central = live_central
    ident = await enrol(central)
    mono = FakeMonotonic()
    till = LocalTill(ident, tmp_path / "agent.db", monotonic=mono, held_retry_s=900)
    real_request = till.client.request
    refuse = True
    calls = 0

    async def stricter(method, path, data=b""):  # as CentralClient.request
        nonlocal calls
        if path == "/sync/v1/batches":
            calls += 1
            if refuse:
                raise CentralError("central answered 422: journal entry refused: entry 1:"
                                   " field 'store' is not a store of this till", 422)
        return await real_request(method, path, data)

    till.client.request = stricter  # type: ignore[method-assign]
    try:
        till.sell()
        with pytest.raises(CentralError):
            await till.sync.push()
        assert till.sync.state.push_held["first_seq"] == 1
        assert await till.sync.push() == 0 and calls == 1  # held: not offered again yet
        mono.t += 901
        refuse = False
        assert await till.sync.push() == 1 and calls == 2
        assert till.sync.state.push_held is None
        assert till.db.execute("SELECT value FROM meta WHERE key = 'push_held'").fetchone() \
            is None
    finally:
        await till.close()


async def test_repricing_passes_over_an_entry_it_cannot_handle_and_goes_on(central, clock):
    """An entry stored before these checks (no accepted sale time, an unreadable one) made
    re-pricing raise on every run, for good; now it is reported and the next is re-priced."""
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    seen = sent_view(await pull(central, till, clock), cid)
    sale(till, central, seen)
    sale(till, central, seen)
    assert (await send(central, till.batch())).status == 200
    first = till.entries[0]
    body = {**first.body(), "at": "garbage"}
    central.db.execute("UPDATE journal SET sold_at = NULL, body = ? WHERE seq = 1",
                       (pack(body),))
    assert repricing.reprice_pending(central.db, clock()) == 2
    assert repricing.progress(central.db) == {"checked": 2, "mismatches": 1, "behind": 0}
    message = central.db.execute("SELECT message FROM alerts WHERE kind = 'repricing-mismatch'"
                                 ).fetchone()["message"]
    assert "entry 1" in message and "cannot be re-priced" in message
    # The second sale was credited as re-priced: its lot is the central's, not provisional.
    holds = [r[0] for r in central.db.execute(
        "SELECT hold FROM lots WHERE receipt_id = ?", (till.entries[1].receipt_id,))]
    assert holds and "unverified" not in holds


def test_entries_a_till_writes_fit_the_schema():
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).isoformat(timespec="seconds")
    e = JournalEntry(seq=1, epoch="e", prev_hash="p", kind="sale", receipt_id="r", at=at,
                     store="s1", customer_id="c", ruleset_version=1, total=10**11,
                     fiscal_doc=1, earned=10**9, lots=[{"points": 10**9, "activates": at,
                                                        "expires": at}])
    assert JournalEntry.from_wire(e.to_wire()) == e
