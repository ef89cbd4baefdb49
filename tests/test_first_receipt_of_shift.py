"""The first receipt of a shift the agent opened itself, failing every way it can.

Opening a shift writes the shift-open report, a fiscal document with a number of its own
(docs/spec/shtrih-m.md). A receipt that then fails must never be taken for registered because
the number moved on: no journal entry, no points, the POS told the receipt is pending, and a
cancel that voids nothing but the receipt left open on the printer. Real agent, real simulator,
real ptys.
"""

from __future__ import annotations

import pytest

from tests.test_crash_safety import SOCKS, assert_whole, checkout_dies, member
from tillpoint.store_harness import ApiError, StoreHarness, Till


async def fault(store: StoreHarness, till: Till, **kw) -> None:
    await store.control(till, "POST", "/faults", kw)


async def documents(store: StoreHarness, till: Till) -> list[tuple[int, str]]:
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    return [(d["number"], d["kind"]) for d in docs]


async def refused(store: StoreHarness, till: Till, body: dict) -> dict:
    with pytest.raises(ApiError) as e:
        await store.pos(till, "POST", "/pos/v1/receipts", body)
    assert e.value.status == 503, e.value.body
    return e.value.body


async def no_points(store: StoreHarness, till: Till, cid: str) -> None:
    """Nothing journalled at the till, and the central's balance is the welcome bonus."""
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["journal"]["last_seq"] == 0
    await store.wait_synced()
    balance = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
    assert balance == {"available": 300, "pending": 0, "debt": 0}


async def test_paper_out_in_the_first_receipt_of_a_shift_leaves_it_pending(store):
    till = store.tills[0]
    cid = await member(store)
    assert (await store.control(till, "GET", "/printer/state"))["shift"]["open"] is False
    # 6 lines of shift-open report, 4 of receipt header, then the roll ends in the first line.
    await fault(store, till, paper_out_after_lines=12)
    body = await refused(store, till, {"customer_id": cid, "lines": [SOCKS]})
    assert "no paper: replace the roll" in body["error"]
    pending = body["pending_receipt_id"]
    assert "fiscal_doc" not in body
    assert await documents(store, till) == [(1, "shift_open")]
    await no_points(store, till, cid)
    assert (await store.pos(till, "GET", "/pos/v1/pending"))["pending"][0]["receipt_id"] \
        == pending

    await fault(store, till, replace_paper=True)
    done = await store.pos(till, "POST", f"/pos/v1/pending/{pending}/resume")
    assert done["receipt_id"] == pending and done["fiscal_doc"] == 2 and done["seq"] == 1
    assert await documents(store, till) == [(1, "shift_open"), (2, "receipt")]
    await assert_whole(store, till, 1)


async def test_refused_command_in_the_first_receipt_then_cancel_voids_only_it(store):
    till = store.tills[0]
    cid = await member(store)
    await fault(store, till, refuse_next={"command": "85", "error": "45"})
    body = await refused(store, till, {"customer_id": cid, "lines": [SOCKS]})
    assert "pending_receipt_id" in body, body
    state = await store.control(till, "GET", "/printer/state")
    assert state["receipt"] is not None  # still open on the printer
    await no_points(store, till, cid)

    before = await documents(store, till)
    assert before == [(1, "shift_open")]
    done = await store.pos(till, "POST", f"/pos/v1/pending/{body['pending_receipt_id']}/cancel")
    assert "cancelled" in done["done"]
    # The cancel voided the open receipt and touched no fiscal document.
    assert await documents(store, till) == before
    paper = (await store.control(till, "GET", "/printer/paper"))["paper"]
    voided = [p["file"] for p in paper if "ЧЕК АННУЛИРОВАН" in p["text"]]
    assert voided == [state["receipt"]["paper_file"]]
    await no_points(store, till, cid)
    await assert_whole(store, till, 0)

    sold = await store.pos(till, "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SOCKS]})
    assert sold["fiscal_doc"] == 2 and sold["earned"] > 0
    await assert_whole(store, till, 1)


async def test_killed_with_the_first_receipt_of_a_shift_open(store):
    till = store.tills[0]
    cid = await member(store)
    store.procs.stop(store.agent_process(till))
    await store.start_agent(till, env={"TILLPOINT_FAILPOINTS": "receipt_opened"})
    sale = {"customer_id": cid, "lines": [SOCKS], "redeem": 100, "idempotency_key": "pos-1-42"}
    await store.present(till, cid)
    await checkout_dies(store, till, sale)
    state = await store.control(till, "GET", "/printer/state")
    assert state["receipt"] is not None and state["last_fiscal_document"] == 1

    await store.start_agent(till)
    assert (await store.control(till, "GET", "/printer/state"))["receipt"] is None
    assert await documents(store, till) == [(1, "shift_open")]
    paper = (await store.control(till, "GET", "/printer/paper"))["paper"]
    assert [p["file"] for p in paper if "ЧЕК АННУЛИРОВАН" in p["text"]] \
        == [state["receipt"]["paper_file"]]
    await no_points(store, till, cid)
    await assert_whole(store, till, 0)
    # The POS, which never got an answer, retries under its key and learns it was cancelled.
    with pytest.raises(ApiError) as e:
        await store.pos(till, "POST", "/pos/v1/receipts", sale)
    assert e.value.status == 409 and e.value.body["state"] == "cancelled"
    assert "open on the printer, cancelled" in e.value.body["error"]
    assert await documents(store, till) == [(1, "shift_open")]
    await no_points(store, till, cid)
