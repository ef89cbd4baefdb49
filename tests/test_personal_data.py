"""Personal data (issue 9, part 6; 152-FZ): nothing personal in hash-chained journal entries,
tills get a birthday's month and day and no names or phones, consents are recorded with
time and source, and a customer's data is exported and erased on request while every total
stays true."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from agent import customers as till_customers
from agent.rules_cache import prepare
from central import repricing
from protocol import rules
from protocol.cards import card_token
from protocol.ruleset_wire import SignedRuleSet
from protocol.wire import unpack
from tests.pos_rig import CARD_SECRET, Rig
from tests.test_central_sync_api import enrolled_till, send
from tests.test_till_takeover import LINES, pull, ruleset, sale, sent_view

CARD = "2990000000012"
BIRTHDAY_WEEK = {"id": "birthday", "name": "Birthday week: 3x points", "priority": 60,
                 "when": {"birthday_within_days": 3},
                 "effect": {"type": "multiplier", "factor": 3, "of": "base"}}


def birthday_doc() -> dict:
    doc = rules.default_ruleset_doc()
    doc["campaigns"].append(BIRTHDAY_WEEK)
    return doc
ANNA = {"card_number": CARD, "name": "Anna Petrova", "phone": "+79990000001",
        "birthday": "1990-11-24", "segments": ["sports"], "welcome_bonus": 100}


async def anna(central, **changes) -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={**ANNA, **changes})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def consent(central, cid: str, **body):
    return await central.post(f"/api/v1/customers/{cid}/consents", headers=central.admin,
                              json=body)


async def test_consents_are_recorded_apart_with_time_and_source(central, clock):
    cid = await anna(central)
    resp = await consent(central, cid, kind="processing", granted=True,
                         source="paper form, store s1", actor="cashier 7")
    assert resp.status == 201
    assert (await resp.json())["advertising"] is None  # one is not the other
    clock.advance(days=1)
    await consent(central, cid, kind="advertising", granted=True, source="app", actor="app")
    clock.advance(days=1)
    await consent(central, cid, kind="advertising", granted=False, source="sms STOP",
                  actor="sms gateway")
    got = (await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json())
    assert got["consents"]["processing"] == {
        "granted": True, "at": "2026-11-23T10:00:00+00:00", "source": "paper form, store s1",
        "actor": "admin-token"}  # who recorded it: the token's account, not the body
    assert got["consents"]["advertising"]["granted"] is False
    assert got["consents"]["advertising"]["source"] == "sms STOP"
    exported = await (await central.get(f"/api/v1/customers/{cid}/personal-data",
                                        headers=central.admin)).json()
    assert [(c["kind"], c["granted"]) for c in exported["consents"]] == [
        ("processing", True), ("advertising", True), ("advertising", False)]
    for body, named in [({"kind": "marketing", "granted": True, "source": "s", "actor": "a"},
                         "kind"),
                        ({"kind": "processing", "granted": "yes", "source": "s", "actor": "a"},
                         "granted"),
                        ({"kind": "processing", "granted": True, "source": "", "actor": "a"},
                         "source")]:
        resp = await consent(central, cid, **body)
        assert resp.status == 400 and named in (await resp.json())["error"]


async def test_export_then_erasure_keeps_the_account_and_every_total(central, clock):
    till = await enrolled_till(central)
    cid = await anna(central)
    seen = sent_view(await pull(central, till, clock), cid)
    sale(till, central, seen)
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())

    exported = await (await central.get(f"/api/v1/customers/{cid}/personal-data",
                                        headers=central.admin)).json()
    assert exported["customer"]["name"] == "Anna Petrova"
    assert exported["customer"]["phone"] == "+79990000001"
    assert exported["customer"]["birthday"] == "1990-11-24"
    assert exported["customer"]["cards"] == ["****0012"]
    assert {m["kind"] for m in exported["ledger"]} >= {"bonus", "earn"}
    assert [r["receipt_id"] for r in exported["receipts"]] == [till.entries[0].receipt_id]

    summary = await (await central.get("/api/v1/summary", headers=central.admin)).json()
    before = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    resp = await central.post(f"/api/v1/customers/{cid}/erase", headers=central.admin,
                              json={"actor": "dpo", "reason": "customer's request"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["balance"] == before["balance"]

    after = await (await central.get(f"/api/v1/customers/{cid}", headers=central.admin)).json()
    assert (after["name"], after["phone"], after["birthday"], after["segments"],
            after["cards"]) == ("", None, None, [], [])
    assert after["balance"] == before["balance"] and after["history"] == before["history"]
    assert after["consents"]["processing"]["granted"] is False
    assert await (await central.get("/api/v1/summary", headers=central.admin)).json() == summary
    # Nobody finds them by card any more; the phone is free for someone else.
    resp = await central.post("/api/v1/customers/lookup", headers=central.admin,
                              json={"card_number": CARD})
    assert resp.status == 404
    assert central.db.execute("SELECT COUNT(*) FROM till_views WHERE customer_id = ?",
                              (cid,)).fetchone()[0] == 0
    # Tills hear of it with their next delta: no card to identify them by, no birthday.
    delta = await pull(central, till, clock)
    mine = next(c for c in delta["customers"] if c["id"] == cid)
    assert mine["cards"] == [] and mine["birthday"] is None
    assert mine["available"] == before["balance"]["available"]
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={**ANNA, "card_number": "2990000000029"})
    assert resp.status == 201
    again = await central.post(f"/api/v1/customers/{cid}/erase", headers=central.admin,
                               json={"actor": "dpo", "reason": "again"})
    assert again.status == 200


async def test_tills_get_the_birthday_month_and_day_and_no_name_or_phone(central, clock):
    till = await enrolled_till(central)
    cid = await anna(central)
    delta = await pull(central, till, clock)
    mine = next(c for c in delta["customers"] if c["id"] == cid)
    assert mine["birthday"] == "11-24"
    assert "Anna" not in str(delta) and "79990000001" not in str(delta)
    assert "1990" not in str(mine)


async def test_the_journal_says_which_birthday_window_held_never_the_date(
        aiohttp_client: Callable, tmp_path: Path):
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    rig = Rig(tmp_path, clock=lambda: now)
    await rig.checkout.rules.add(prepare(SignedRuleSet(2, "2020-01-01T00:00:00+00:00",
                                                       birthday_doc())))
    till_customers.apply_deltas(rig.db, {
        "customers": [{"id": "c1", "available": 0, "pending": 0, "debt": 0,
                       "birthday": "11-24", "cards": [card_token(CARD_SECRET, CARD)]}],
        "cursor": 1, "epoch": None, "acked_seq": 0})
    client = await aiohttp_client(rig.app())
    try:
        resp = await client.post("/pos/v1/receipts", headers=rig.auth,
                                 json={"lines": LINES, "customer_id": "c1"})
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["earned"] == 66  # 3x for the birthday week
        body = rig.db.execute("SELECT body FROM journal").fetchone()[0]
        customer = unpack(body)["detail"]["customer"]
        assert customer["birthday"] is None and customer["birthday_within"] == [3]
        assert b"11-24" not in body and b"birthday\xa511-24" not in body
    finally:
        rig.db.close()


async def test_repricing_judges_the_birthday_by_what_the_central_sent(central, clock):
    till = await enrolled_till(central)
    near = await anna(central)
    far = await anna(central, card_number="2990000000029", phone="+79990000002",
                     birthday="1990-05-17")
    resp = await central.put("/api/v1/ruleset", headers=central.admin,
                             json={"doc": birthday_doc(), "actor": "marketing"})
    assert resp.status == 201, await resp.text()
    delta = await pull(central, till, clock)
    rs = ruleset(central, 2)
    when = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    receipt = rules.Receipt(lines=tuple(
        rules.ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                          amount=(ln["qty"] * ln["price"] + 500) // 1000,
                          category=ln["category"]) for ln in LINES), store="s1")
    for cid in (near, far):
        # The far one's till claims a birthday the central never sent it.
        customer = dataclasses.replace(sent_view(delta, cid), birthday=date(2000, 11, 24))
        s = rules.settle(rs, receipt, customer, when, 0)
        assert s.earned == 66
        view = rules.journal_view(customer, rs, "s1", when)
        assert view["birthday"] is None and view["birthday_within"] == [3]
        e = dataclasses.replace(till.sale(cid, earned=s.earned, at=when), ruleset_version=2,
                                detail={"settlement": s.to_dict(), "lines": LINES,
                                        "customer": view})
        till.entries[-1] = dataclasses.replace(e, hash=e.compute_hash())
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 2
    alerts = [r["message"] for r in central.db.execute(
        "SELECT message FROM alerts WHERE kind = 'repricing-mismatch'")]
    assert len(alerts) == 1 and "entry 2" in alerts[0] and "earned 22" in alerts[0]
