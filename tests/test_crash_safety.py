"""SIGKILL the agent at each step of a checkout, restart it, and find everything whole.

After every crash: no receipt printed twice, no loyalty entry without its fiscal document,
no fiscal document without its loyalty entry, and an intact journal.
"""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from tillpoint.processes import wait_for
from tillpoint.store_harness import StoreHarness, Till

CARD = "2990000000019"
SOCKS = {"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "category": "sports",
         "vat": "22"}


async def checkout_dies(store: StoreHarness, till: Till, body: dict) -> None:
    """Send a receipt to an agent that will die on it; wait until it is dead."""
    proc = store.agent_process(till)
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        await store.pos(till, "POST", "/pos/v1/receipts", body)
    await wait_for(lambda: proc.poll(), "the agent to die", timeout=30)
    assert proc.returncode == -signal.SIGKILL


async def assert_whole(store: StoreHarness, till: Till, receipts: int) -> None:
    """Fiscal receipts and journal entries correspond one to one, and the chain holds."""
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    fiscal = sorted(d["number"] for d in docs if d["kind"] == "receipt")
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["pending_receipts"] == []
    assert status["journal"]["last_seq"] == receipts
    from agent import journal
    from agent.store import open_store

    db = open_store(till.state / "agent.db")
    try:
        assert journal.verify(db).ok
        journalled = sorted(e.fiscal_doc for e in journal.entries_from(db, 1, 10**6))
    finally:
        db.close()
    assert journalled == fiscal
    assert len(set(fiscal)) == len(fiscal) == receipts
    await store.wait_synced()
    held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
    assert [e["seq"] for e in held] == list(range(1, receipts + 1))


async def member(store: StoreHarness) -> str:
    cid = (await store.office("POST", "/api/v1/customers",
                              {"card_number": CARD, "welcome_bonus": 300}))["id"]
    await store.pos(store.tills[0], "POST", "/pos/v1/identify", {"card_number": CARD})
    return cid


async def test_killed_before_printing_the_receipt_is_dropped(store: StoreHarness):
    till = store.tills[0]
    cid = await member(store)
    store.procs.stop(store.agent_process(till))
    await store.start_agent(till, env={"TILLPOINT_FAILPOINTS": "before_print"})
    await store.present(till, cid)
    await checkout_dies(store, till, {"customer_id": cid, "lines": [SOCKS], "redeem": 100})
    await store.start_agent(till)
    await assert_whole(store, till, 0)
    await store.present(till, cid)  # a restarted till: the customer shows the app again
    after = await store.pos(till, "POST", "/pos/v1/receipts",
                            {"customer_id": cid, "lines": [SOCKS], "redeem": 100})
    assert after["redeemed"] == 100 and after["seq"] == 1
    await assert_whole(store, till, 1)
    balance = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
    assert balance["available"] == 200  # spent once, not twice


async def test_killed_while_printing_the_open_receipt_is_cancelled(store: StoreHarness):
    till = store.tills[0]
    cid = await member(store)
    await store.control(till, "POST", "/faults", {"slow_printing_ms": 400})
    proc = store.agent_process(till)
    sale = asyncio.create_task(store.pos(till, "POST", "/pos/v1/receipts",
                                         {"customer_id": cid, "lines": [SOCKS]}))

    async def document_open() -> bool | None:
        state = await store.control(till, "GET", "/printer/state")
        return True if state["receipt"] is not None else None

    await wait_for(document_open, "the printer to open the receipt", timeout=30)
    proc.send_signal(signal.SIGKILL)
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        await sale
    await store.control(till, "POST", "/faults", {"clear": True})
    await store.start_agent(till)
    await assert_whole(store, till, 0)
    paper = (await store.control(till, "GET", "/printer/paper"))["paper"]
    assert any("ЧЕК АННУЛИРОВАН" in p["text"] for p in paper)  # begun on paper, then voided


async def test_killed_after_printing_the_receipt_is_journalled_once(store: StoreHarness):
    till = store.tills[0]
    cid = await member(store)
    store.procs.stop(store.agent_process(till))
    await store.start_agent(till, env={"TILLPOINT_FAILPOINTS": "after_print"})
    await store.present(till, cid)
    await checkout_dies(store, till, {"customer_id": cid, "lines": [SOCKS], "redeem": 50})
    await store.start_agent(till)
    await assert_whole(store, till, 1)
    balance = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
    assert balance == {"available": 250, "pending": 20, "debt": 0}  # 5 % of 400.00
