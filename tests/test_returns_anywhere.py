"""Returns anywhere in the chain, through real processes: a central, two tills, simulators.

A sale made at one till is returned at another, priced from the central's copy of it and
refunded the way it was paid; two tills returning the same line at once cannot both
succeed; offline a till returns its own sales and says plainly why not another till's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.databases import ON_BOTH_DATABASES
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness

CARD = "2990000000019"
REF = {"rrn": "612345678901", "approval_code": "A7C2F1", "terminal_id": "T-0042"}
SHOES = {"sku": "100", "name": "Running shoes", "qty": 1000, "price": 500000,
         "category": "sports/shoes", "vat": "22"}
SOCKS = {"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "category": "sports",
         "vat": "10"}


async def balances(store: StoreHarness, customer_id: str) -> dict:
    return (await store.office("GET", f"/api/v1/customers/{customer_id}"))["balance"]


async def outcome(coro) -> tuple[int, dict]:
    try:
        return 201, await coro
    except ApiError as e:
        return e.status, e.body


@ON_BOTH_DATABASES
async def test_a_sale_returned_at_another_till_refunds_the_card_first_and_its_own_points(
        tmp_path: Path, store_database: str | None):
    async with StoreHarness(tmp_path, database=store_database) as store:
        await store.start_central()
        one = await store.add_till("till-1")
        two = await store.add_till("till-2")
        cid = (await store.office("POST", "/api/v1/customers", {
            "card_number": CARD, "name": "Anna", "welcome_bonus": 500}))["id"]
        await store.pos(one, "POST", "/pos/v1/identify", {"card_number": CARD})
        await store.present(one, cid)
        # 5,000.00 of shoes: 200 points pay 200.00; 3,000.00 by card, the rest in cash.
        sale = await store.pos(one, "POST", "/pos/v1/receipts", {
            "customer_id": cid, "lines": [SHOES], "redeem": 200,
            "payments": {"cards": [{"amount": 300000, **REF}]}})
        assert (sale["earned"], sale["redeemed"], sale["total"]) == (240, 200, 480000)
        await store.wait_synced()

        # Half the money back first would be card only; here, all of it at the other till.
        back = await store.pos(two, "POST", "/pos/v1/returns", {
            "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
        assert (back["clawback"], back["refund"], back["total"]) == (240, 200, 480000)
        assert back["payments"] == {"cash": 180000, "points": 200,
                                    "cards": [{"amount": 300000, **REF}]}
        docs = (await store.control(two, "GET", "/printer/documents"))["documents"]
        returned = [d for d in docs if d["kind"] == "receipt"][-1]
        assert returned["receipt_type"] == 2 and returned["total"] == 480000
        assert returned["payments"][:2] == [180000, 300000] and returned["change"] == 0
        assert [ln["taxes"] for ln in returned["lines"]] == [[1, 0, 0, 0]]

        # The central's ledger found the sale's own lots: back to the welcome bonus, the
        # pending points of the sale gone, nothing else touched.
        await store.wait_synced()
        assert await balances(store, cid) == {"available": 500, "pending": 0, "debt": 0}
        with pytest.raises(ApiError) as e:
            await store.pos(one, "POST", "/pos/v1/returns", {
                "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
        assert e.value.status == 409 and "would exceed the 1000 bought" in e.value.body["error"]


@ON_BOTH_DATABASES
async def test_two_tills_returning_the_same_line_at_once_cannot_both_succeed(tmp_path: Path,
        store_database: str | None):
    async with StoreHarness(tmp_path, database=store_database) as store:
        await store.start_central()
        one = await store.add_till("till-1")
        two = await store.add_till("till-2")
        sales = [await store.pos(one, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})
                 for _ in range(3)]
        await store.wait_synced()
        for sale in sales:
            body = {"receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 3000}]}
            results = await asyncio.gather(
                outcome(store.pos(one, "POST", "/pos/v1/returns", body)),
                outcome(store.pos(two, "POST", "/pos/v1/returns", body)))
            assert sorted(status for status, _ in results) == [201, 409], results
            refused = next(b for s, b in results if s == 409)
            assert ("being returned at another till" in refused["error"]
                    or "would exceed" in refused["error"]), refused
        await store.wait_synced()
        summary = await store.office("GET", "/api/v1/summary")
        assert summary["receipts"]["returns"] == 3


async def test_offline_a_till_returns_its_own_sales_and_says_why_not_another_tills(
        tmp_path: Path):
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        one = await store.add_till("till-1")
        two = await store.add_till("till-2")
        sale = await store.pos(one, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})
        await store.wait_synced()
        store.kill_central()
        back = await store.pos(one, "POST", "/pos/v1/returns", {
            "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
        assert back["total"] == 15000 and back["payments"]["cash"] == 15000
        with pytest.raises(ApiError) as e:
            await store.pos(two, "POST", "/pos/v1/returns", {
                "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
        assert e.value.status == 503
        assert "only while this till is online" in e.value.body["error"]


async def test_goods_back_after_the_window_keep_their_points_when_the_programme_says_so(
        store: StoreHarness):
    """A programme whose window is 0 days: every return is a warranty return."""
    from protocol.rules import default_ruleset_doc

    till = store.tills[0]
    doc = default_ruleset_doc()
    doc["programme"].update(return_window_days=0, after_return_window="keep")
    await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "marketing"})

    async def has_v2() -> bool | None:
        status = await store.pos(till, "GET", "/pos/v1/status")
        return True if status["ruleset_version"] == 2 else None

    await wait_for(has_v2, "the till to pull rule set 2", timeout=30)
    cid = (await store.office("POST", "/api/v1/customers", {"card_number": CARD}))["id"]
    await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})
    sale = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SOCKS]})
    assert sale["earned"] == 22
    back = await store.pos(till, "POST", "/pos/v1/returns", {
        "receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 3000}]})
    assert (back["clawback"], back["points_after_window"]) == (0, "kept")
    await store.wait_synced()
    assert await balances(store, cid) == {"available": 22, "pending": 0, "debt": 0}


async def test_a_return_cancelled_at_the_printer_frees_the_goods_for_another_till(
        tmp_path: Path):
    async with StoreHarness(tmp_path) as store:
        await store.start_central()
        one = await store.add_till("till-1")
        two = await store.add_till("till-2")
        sale = await store.pos(one, "POST", "/pos/v1/receipts", {"lines": [SOCKS, SOCKS]})
        await store.pos(two, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})  # shift open
        await store.wait_synced()
        body = {"receipt_id": sale["receipt_id"], "lines": [{"line": 0, "qty": 3000},
                                                            {"line": 1, "qty": 3000}]}
        # Paper runs out in the middle of the return at till 2: it stays pending, and the
        # central holds the goods for it.
        await store.control(two, "POST", "/faults", {"paper_out_after_lines": 3})
        with pytest.raises(ApiError) as e:
            await store.pos(two, "POST", "/pos/v1/returns", body)
        assert e.value.status == 503
        pending = e.value.body["pending_receipt_id"]
        status, held = await outcome(store.pos(one, "POST", "/pos/v1/returns", body))
        assert status == 409 and "being returned at another till" in held["error"]
        # The cashier gives up: the open receipt is cancelled, the lease released.
        await store.control(two, "POST", "/faults", {"replace_paper": True})
        await store.pos(two, "POST", "/pos/v1/printer/continue")
        done = await store.pos(two, "POST", f"/pos/v1/pending/{pending}/cancel")
        assert "cancelled" in done["done"]
        back = await store.pos(one, "POST", "/pos/v1/returns", body)
        assert back["total"] == 90000
