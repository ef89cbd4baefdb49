"""One store on real parts: central and agent processes, real HTTP, real ptys, real SQLite.

Balances are worked out by hand from the default programme: 1 point = 1.00, 5 % back on
what is paid with money (rounded down), tobacco outside the programme, up to 50 % of a
receipt payable with points, 14 days pending.
"""

from __future__ import annotations

import pytest

from tests.databases import ON_BOTH_DATABASES
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness

CARD = "2990000000019"  # EAN-13 with its check digit

SHOES = {"sku": "100", "name": "Running shoes", "qty": 1000, "price": 500000,
         "category": "sports/shoes", "vat": "22"}
CIGARETTES = {"sku": "200", "name": "Cigarettes", "qty": 1000, "price": 21900,
              "category": "tobacco", "vat": "22"}
SOCKS = {"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "category": "sports",
         "vat": "22"}


async def balances(store: StoreHarness, customer_id: str) -> dict:
    return (await store.office("GET", f"/api/v1/customers/{customer_id}"))["balance"]


async def assert_central_repriced_every_sale_alike(store: StoreHarness) -> None:
    """The central re-prices each journalled sale with the rules the till used."""
    await store.wait_synced()

    async def caught_up() -> dict | None:
        progress = await store.office("GET", "/api/v1/repricing")
        return progress if progress["behind"] == 0 else None

    progress = await wait_for(caught_up, "the central to re-price the sales", timeout=30)
    assert progress["checked"] > 0 and progress["mismatches"] == 0, progress


@ON_BOTH_DATABASES
async def test_checkout_from_card_swipe_to_central_ledger(store: StoreHarness):
    till = store.tills[0]
    created = await store.office("POST", "/api/v1/customers",
                                 {"card_number": CARD, "name": "Anna", "welcome_bonus": 500})
    cid = created["id"]

    # The card is swiped at the reader; the POS asks the agent who it was.
    await store.control(till, "POST", "/reader/present", {"barcode": CARD})

    async def identified():
        try:
            return await store.pos(till, "POST", "/pos/v1/identify", {})
        except ApiError as e:
            if "no card presented" in str(e.body):
                return None
            raise

    who = await wait_for(identified, "the swiped card to reach the agent", timeout=15)
    assert who["customer_id"] == cid and who["card_last4"] == "0019"
    assert who["balance"] == {"available": 500, "pending": 0}

    priced = await store.pos(till, "POST", "/pos/v1/price",
                             {"customer_id": cid, "lines": [SHOES, CIGARETTES]})
    assert priced["total"] == 521900
    assert priced["earned"] == 250  # 5 % of 5,000.00; nothing on tobacco
    assert priced["max_redeemable"] == 500  # the balance, below 50 % of the receipt

    sale = await store.pos(till, "POST", "/pos/v1/receipts", {
        "customer_id": cid, "lines": [SHOES, CIGARETTES], "redeem": 200, "payment": "card"})
    # 200 points paid 200.00 of the shoes: 5 % of the 4,800.00 paid in money.
    assert (sale["earned"], sale["redeemed"], sale["total"]) == (240, 200, 501900)
    assert sale["balance"] == {"available": 300, "pending": 240}

    socks = await store.pos(till, "POST", "/pos/v1/receipts",
                            {"customer_id": cid, "lines": [SOCKS]})
    assert socks["earned"] == 22  # 5 % of 450.00 = 22.5, rounded down

    anonymous = await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})
    assert anonymous["earned"] == 0

    # Returns: the cigarettes (no points either way), one pair of socks of three, then
    # the shoes: the points they earned go back, the points that paid for them come back.
    back = await store.pos(till, "POST", "/pos/v1/returns", {
        "receipt_id": sale["receipt_id"], "lines": [{"line": 1, "qty": 1000}]})
    assert (back["clawback"], back["refund"], back["total"]) == (0, 0, 21900)
    back = await store.pos(till, "POST", "/pos/v1/returns", {
        "receipt_id": socks["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
    assert (back["clawback"], back["refund"]) == (7, 0)  # a third of 22, rounded down
    back = await store.pos(till, "POST", "/pos/v1/returns", {
        "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
    assert (back["clawback"], back["refund"], back["total"]) == (240, 200, 480000)

    await store.wait_synced()
    assert await balances(store, cid) == {"available": 500, "pending": 15, "debt": 0}
    summary = await store.office("GET", "/api/v1/summary")
    assert summary["receipts"] == {"n": 6, "sales": 3, "returns": 3, "member_sales": 2}
    tills = (await store.office("GET", "/api/v1/tills"))["tills"]
    assert tills[0]["acked_seq"] == 6 and tills[0]["last_sync_at"] is not None

    # Every journal entry has its fiscal document, and the other way round.
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    receipts = [d for d in docs if d["lines"]]
    assert len(receipts) == 6
    held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
    assert [e["seq"] for e in held] == [1, 2, 3, 4, 5, 6]
    paper = (await store.control(till, "GET", "/printer/paper"))["paper"]
    shoes_receipt = next(p["text"] for p in paper if "Running shoes" in p["text"])
    assert "Points spent: 200" in shoes_receipt and "Points earned: 240" in shoes_receipt
    await assert_central_repriced_every_sale_alike(store)


async def test_bad_input_at_the_till_gets_clear_errors_and_changes_nothing(
        store: StoreHarness):
    till = store.tills[0]
    with pytest.raises(ApiError) as e:
        await store.pos(till, "POST", "/pos/v1/identify", {"card_number": "4276380012345671"})
    assert e.value.status == 404 and "unknown card ****5671" in e.value.body["error"]
    cases = [
        ({"lines": []}, "non-empty"),
        ({"lines": [{**SOCKS, "qty": -1}]}, "qty"),
        ({"lines": [{**SOCKS, "price": 1.5}]}, "price"),
        ({"lines": [SOCKS], "redeem": 10}, "only members"),
        ({"lines": [SOCKS], "customer_id": "cus_nobody"}, "not known"),
        ({"lines": [SOCKS], "payment": "barter"}, "payment"),
    ]
    for body, word in cases:
        with pytest.raises(ApiError) as e:
            await store.pos(till, "POST", "/pos/v1/receipts", body)
        assert 400 <= e.value.status < 500 and word in e.value.body["error"], body
    with pytest.raises(ApiError) as e:
        await store.pos(till, "POST", "/pos/v1/returns",
                        {"receipt_id": "nope", "lines": [{"line": 0, "qty": 1}]})
    assert e.value.status == 404
    for path in ("/pos/v1/receipts", "/pos/v1/price", "/pos/v1/identify", "/pos/v1/returns"):
        async with store.http.post(till.pos_url + path, data=b"{lines: oops",
                                   headers={"Content-Type": "application/json",
                                            **till.pos_headers}) as resp:
            assert resp.status == 400
            assert "not valid JSON" in (await resp.json())["error"]
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["journal"]["last_seq"] == 0 and status["pending_receipts"] == []
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    assert docs == []
    log = (store.procs.log_dir / "till-1-agent.log").read_text()
    assert "4276380012345671" not in log


async def test_redeeming_more_than_allowed_is_refused_with_the_reason(store: StoreHarness):
    till = store.tills[0]
    cid = (await store.office("POST", "/api/v1/customers",
                              {"card_number": CARD, "welcome_bonus": 1000}))["id"]
    await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})
    await store.present(till, cid)  # the customer's app code: they may spend
    with pytest.raises(ApiError) as e:
        # 450.00 of socks: at most 50 %, 225 points.
        await store.pos(till, "POST", "/pos/v1/receipts",
                        {"customer_id": cid, "lines": [SOCKS], "redeem": 300})
    assert e.value.status == 409 and "redemption refused" in e.value.body["error"]
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["journal"]["last_seq"] == 0


async def test_shift_closes_from_the_command_line_and_reopens_on_the_next_sale(
        store: StoreHarness):
    import asyncio
    import sys

    till = store.tills[0]
    await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})
    port = till.pos_url.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillpoint", "agent", "shift", "close", "--state",
        str(till.state), "--pos-port", port, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    assert [d["kind"] for d in docs] == ["shift_open", "receipt", "z_report"]
    assert f"fiscal document {docs[2]['number']}" in out.decode()
    state = await store.control(till, "GET", "/printer/state")
    assert state["shift"]["open"] is False
    await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})
    state = await store.control(till, "GET", "/printer/state")
    assert state["shift"]["open"] is True and state["shift"]["number"] == 2


async def test_campaign_discount_and_points_as_a_payment_on_the_fiscal_receipt(
        store: StoreHarness):
    """Head office publishes a campaign; a till set to show points as a payment type."""
    from protocol.rules import default_ruleset_doc

    till = store.tills[0]
    doc = default_ruleset_doc()
    doc["campaigns"].append({"id": "shoes-10", "name": "10% off shoes", "priority": 10,
                             "members_only": False, "lines": {"categories": ["sports/shoes"]},
                             "effect": {"type": "discount", "percent": 10}})
    published = await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "marketing"})
    assert published["version"] == 2
    store.procs.stop(store.agent_process(till))
    await store.start_agent(till, "--points-mode", "payment")

    async def has_v2() -> bool | None:
        status = await store.pos(till, "GET", "/pos/v1/status")
        return True if status["ruleset_version"] == 2 else None

    await wait_for(has_v2, "the till to pull rule set 2", timeout=30)
    cid = (await store.office("POST", "/api/v1/customers",
                              {"card_number": CARD, "welcome_bonus": 1000}))["id"]
    await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})
    await store.present(till, cid)
    sale = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SHOES], "redeem": 300})
    # 5,000.00 less 10 % is 4,500.00; 300 points pay 300.00; 5 % of the 4,200.00 in money.
    assert (sale["total"], sale["redeemed"], sale["earned"]) == (420000, 300, 210)
    doc_ = (await store.control(till, "GET", "/printer/documents"))["documents"][-1]
    assert [d["amount"] for d in doc_["discounts"]] == [50000]
    assert doc_["payments"] == [420000, 0, 0, 30000]
    assert doc_["total"] == 450000

    # A bad rule set is refused at publish, naming the place.
    bad = default_ruleset_doc()
    bad["campaigns"][0]["effect"]["percent"] = -5
    with pytest.raises(ApiError) as e:
        await store.office("PUT", "/api/v1/ruleset", {"doc": bad, "actor": "marketing"})
    assert e.value.status == 422 and "campaigns[0].effect.percent" in e.value.body["error"]


@ON_BOTH_DATABASES
async def test_profile_from_head_office_reaches_the_till_and_its_campaigns(
        store: StoreHarness):
    """Birthday and an activated personal offer, set at head office, change what a till
    gives: the rules engine sees them through the customer deltas."""
    from datetime import UTC, datetime

    from protocol.rules import default_ruleset_doc

    till = store.tills[0]
    doc = default_ruleset_doc()
    doc["campaigns"] += [
        {"id": "birthday", "priority": 5, "when": {"birthday_within_days": 3},
         "effect": {"type": "per_receipt", "points": 100}},
        {"id": "socks-x2", "priority": 5, "when": {"offers": ["socks-x2"]},
         "lines": {"skus": ["300"]}, "effect": {"type": "multiplier", "factor": 2,
                                                "of": "base"}},
    ]
    await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "marketing"})
    cid = (await store.office("POST", "/api/v1/customers", {"card_number": CARD}))["id"]
    await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})

    async def earned_becomes(points: int) -> None:
        async def probe() -> bool | None:
            priced = await store.pos(till, "POST", "/pos/v1/price",
                                     {"customer_id": cid, "lines": [SOCKS]})
            return True if priced["earned"] == points else None

        await wait_for(probe, f"the till to price {points} points", timeout=30)

    await earned_becomes(22)  # 5 % of 450.00
    today = datetime.now(UTC).date().isoformat()
    await store.office("PATCH", f"/api/v1/customers/{cid}", {"birthday": today})
    await earned_becomes(122)  # and 100 for the birthday
    await store.office("POST", f"/api/v1/customers/{cid}/offers", {"offer": "socks-x2"})
    await earned_becomes(144)  # and the base points once more on the socks
    sale = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SOCKS]})
    assert sale["earned"] == 144
    await assert_central_repriced_every_sale_alike(store)
    with pytest.raises(ApiError) as e:
        await store.office("PATCH", f"/api/v1/customers/{cid}", {"balance": 10**6})
    assert e.value.status == 400 and "cannot change balance" in e.value.body["error"]
    with pytest.raises(ApiError) as e:
        await store.office("PATCH", f"/api/v1/customers/{cid}", {"birthday": "31.12.1990"})
    assert e.value.status == 400 and "YYYY-MM-DD" in e.value.body["error"]


@ON_BOTH_DATABASES
async def test_campaign_budget_runs_out_at_the_till_and_at_the_central(store: StoreHarness):
    """A campaign capped at 100 points per customer a month: the till grants up to the cap,
    then stops and says why; the central's count agrees once the till has synced."""
    import json
    from datetime import UTC, datetime

    from central import campaign_budgets, db, deltas
    from protocol.rules import default_ruleset_doc

    till = store.tills[0]
    doc = default_ruleset_doc()
    doc["campaigns"].append({"id": "promo", "name": "60 points a receipt", "priority": 5,
                             "effect": {"type": "per_receipt", "points": 60},
                             "budget": {"total": 1000, "per_customer": 100, "period": "month"}})
    await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "marketing"})
    cid = (await store.office("POST", "/api/v1/customers", {"card_number": CARD}))["id"]

    async def priced_earning(points: int) -> bool | None:
        try:
            priced = await store.pos(till, "POST", "/pos/v1/price",
                                     {"customer_id": cid, "lines": [SOCKS]})
        except ApiError as e:
            if e.status == 404:  # the customer has not reached the till yet
                return None
            raise
        return True if priced["earned"] == points else None

    await wait_for(lambda: priced_earning(82), "the till to price the promo", timeout=30)
    first = await store.pos(till, "POST", "/pos/v1/receipts",
                            {"customer_id": cid, "lines": [SOCKS]})
    assert first["earned"] == 82  # 22 base + 60 promo
    second = await store.pos(till, "POST", "/pos/v1/receipts",
                             {"customer_id": cid, "lines": [SOCKS]})
    assert second["earned"] == 62  # 22 base + the 40 left of the customer's 100
    priced = await store.pos(till, "POST", "/pos/v1/price",
                             {"customer_id": cid, "lines": [SOCKS]})
    assert priced["earned"] == 22  # back to base: the till stopped granting the promo
    assert "budget used up" in json.dumps(priced["explanation"])
    third = await store.pos(till, "POST", "/pos/v1/receipts",
                            {"customer_id": cid, "lines": [SOCKS]})
    assert third["earned"] == 22

    await store.wait_synced()
    conn = db.connect(store.central_database)
    try:
        async def central_counted() -> dict | None:
            if campaign_budgets.behind(conn):
                return None
            delta = deltas.customer_deltas(conn, till.till_id, 0, datetime.now(UTC))
            mine = [c for c in delta["customers"] if c["id"] == cid]
            return delta if mine and mine[0]["allowances"] == {"promo": 0} else None

        delta = await wait_for(central_counted, "the central to count the promo", timeout=30)
        assert delta["budgets"]["campaigns"]["promo"]["till_remaining"] == 900
        assert delta["budgets"]["as_of_seq"] == 3
    finally:
        conn.close()
    # And after the till pulls that delta it still stops: the central's figure now holds
    # what the till had subtracted itself, and nothing is counted twice.
    assert await priced_earning(22)
    await assert_central_repriced_every_sale_alike(store)  # the capped grant included


@ON_BOTH_DATABASES
async def test_a_cross_offer_earned_on_one_purchase_pays_on_the_next_only(
        store: StoreHarness):
    """Cosmetics buyers get 100 bonus points on perfume next time, once."""
    from protocol.rules import default_ruleset_doc

    till = store.tills[0]
    shampoo = {"sku": "400", "name": "Shampoo", "qty": 1000, "price": 40000,
               "category": "cosmetics", "vat": "22"}
    perfume = {"sku": "500", "name": "Perfume", "qty": 1000, "price": 200000,
               "category": "perfume", "vat": "22"}
    doc = default_ruleset_doc()
    doc["campaigns"] += [
        {"id": "cosmetics-to-perfume", "priority": 5, "lines": {"categories": ["cosmetics"]},
         "effect": {"type": "next_purchase_offer", "offer": "perfume-100", "valid_days": 30}},
        {"id": "perfume-100", "priority": 5, "when": {"offers": ["perfume-100"]},
         "lines": {"categories": ["perfume"]}, "effect": {"type": "per_receipt",
                                                           "points": 100}},
    ]
    await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "marketing"})
    cid = (await store.office("POST", "/api/v1/customers", {"card_number": CARD}))["id"]

    async def perfume_earns(points: int) -> bool | None:
        try:
            priced = await store.pos(till, "POST", "/pos/v1/price",
                                     {"customer_id": cid, "lines": [perfume]})
        except ApiError as e:
            if e.status in (404, 503):  # customer or rule set not at the till yet
                return None
            raise
        return True if priced["earned"] == points else None

    await wait_for(lambda: perfume_earns(100), "the till to know the customer", timeout=30)
    await store.pos(till, "POST", "/pos/v1/receipts", {"customer_id": cid, "lines": [shampoo]})
    # 5 % of 2,000.00, and the offer the shampoo earned, once the central has it.
    await wait_for(lambda: perfume_earns(200), "the offer to reach the till", timeout=30)
    used = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [perfume]})
    assert used["earned"] == 200
    # At once, before any sync: the till does not honour the offer a second time.
    assert await perfume_earns(100)
    async def used_at_the_central() -> bool | None:
        held = await store.office("GET", f"/api/v1/customers/{cid}")
        return True if held["granted_offers"]["perfume-100"]["used"] else None

    await wait_for(used_at_the_central, "the central to mark the offer used", timeout=30)
    assert await perfume_earns(100)  # and so it stays once the till has the central's word
    await assert_central_repriced_every_sale_alike(store)
