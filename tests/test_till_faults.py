"""Every printer fault a store produces, through the real agent against the simulator.

After each: no receipt printed twice, no loyalty entry without its fiscal document, no fiscal
document without its entry, and the cashier got a message saying what to do.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.test_crash_safety import SOCKS, assert_whole
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness, Till

SHOES = {"sku": "100", "name": "Running shoes", "qty": 1000, "price": 500000,
         "category": "sports/shoes", "vat": "22"}


async def sell(store: StoreHarness, till: Till, lines=(SOCKS,)) -> dict:
    return await store.pos(till, "POST", "/pos/v1/receipts", {"lines": list(lines)})


async def refused(store: StoreHarness, till: Till, lines=(SOCKS,)) -> dict:
    with pytest.raises(ApiError) as e:
        await sell(store, till, lines)
    assert e.value.status == 503
    return e.value.body


async def fault(store: StoreHarness, till: Till, **kw) -> None:
    await store.control(till, "POST", "/faults", kw)


async def test_paper_runs_out_mid_receipt_then_the_receipt_is_resumed_once(store):
    till = store.tills[0]
    await sell(store, till)  # the shift is open: the next paper goes to the receipt
    await fault(store, till, paper_out_after_lines=6)
    body = await refused(store, till, [SOCKS, SHOES, SOCKS])
    assert "no paper: replace the roll" in body["error"]
    pending = body["pending_receipt_id"]
    # While it stands unfinished, the till takes no other receipt.
    blocked = await refused_conflict(store, till)
    assert blocked["pending_receipt_id"] == pending
    await fault(store, till, replace_paper=True)
    done = await store.pos(till, "POST", f"/pos/v1/pending/{pending}/resume")
    assert done["receipt_id"] == pending and done["seq"] == 2
    await assert_whole(store, till, 2)
    await sell(store, till)
    await assert_whole(store, till, 3)


async def refused_conflict(store: StoreHarness, till: Till) -> dict:
    with pytest.raises(ApiError) as e:
        await sell(store, till)
    assert e.value.status == 409
    return e.value.body


async def test_unfinished_receipt_can_be_cancelled_by_the_cashier(store):
    till = store.tills[0]
    await sell(store, till)
    await fault(store, till, paper_out_after_lines=6)
    pending = (await refused(store, till, [SOCKS, SHOES, SOCKS]))["pending_receipt_id"]
    await fault(store, till, replace_paper=True)
    await store.pos(till, "POST", "/pos/v1/printer/continue")
    done = await store.pos(till, "POST", f"/pos/v1/pending/{pending}/cancel")
    assert "cancelled" in done["done"]
    await assert_whole(store, till, 1)
    await sell(store, till)
    await assert_whole(store, till, 2)


async def test_no_paper_before_the_receipt_leaves_nothing_pending(store):
    till = store.tills[0]
    await fault(store, till, paper_out="now")
    body = await refused(store, till)
    assert "no paper" in body["error"] and "pending_receipt_id" not in body
    await fault(store, till, replace_paper=True)
    await store.pos(till, "POST", "/pos/v1/printer/continue")
    await sell(store, till)
    await assert_whole(store, till, 1)


@pytest.mark.parametrize("kind", ["drop_next_reply", "corrupt_next_reply"])
async def test_a_lost_or_garbled_reply_is_recovered_without_printing_twice(store, kind):
    till = store.tills[0]
    await fault(store, till, **{kind: True})
    sold = await sell(store, till, [SOCKS, SHOES])
    assert sold["seq"] == 1
    await assert_whole(store, till, 1)


async def test_slow_printing_is_waited_for(store):
    till = store.tills[0]
    await fault(store, till, slow_printing_ms=150)
    await sell(store, till, [SOCKS, SHOES])
    await assert_whole(store, till, 1)


async def test_shift_over_24_hours_is_reported_not_worked_around(store):
    till = store.tills[0]
    await sell(store, till)
    await fault(store, till, shift_over_24h=True)
    body = await refused(store, till)
    assert "shift over 24 h: close the shift" in body["error"]
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["pending_receipts"] == []
    await store.pos(till, "POST", "/pos/v1/shift/close")
    await sell(store, till)
    await assert_whole(store, till, 2)


async def test_fiscal_memory_full_is_a_clear_refusal(store):
    till = store.tills[0]
    await fault(store, till, fiscal_memory_full=True)
    body = await refused(store, till)
    assert "fiscal memory full" in body["error"]
    await assert_whole(store, till, 0)


async def test_cable_pulled_mid_receipt_is_settled_when_it_comes_back(store):
    till = store.tills[0]
    await fault(store, till, slow_printing_ms=300)
    sale = asyncio.create_task(sell(store, till, [SOCKS, SHOES, SOCKS]))

    async def document_open() -> bool | None:
        state = await store.control(till, "GET", "/printer/state")
        return True if state["receipt"] is not None else None

    await wait_for(document_open, "the receipt to open", timeout=30)
    await fault(store, till, unplug=True)
    with pytest.raises(ApiError) as e:
        await sale
    assert e.value.status == 503
    status = await store.pos(till, "GET", "/pos/v1/status")
    assert status["printer"]["connected"] is False

    await fault(store, till, slow_printing_ms=0)
    await fault(store, till, replug=True)
    replugged = time.monotonic()

    async def settled() -> bool | None:
        status = await store.pos(till, "GET", "/pos/v1/status")
        ok = status["printer"]["connected"] and not status["pending_receipts"]
        return True if ok else None

    await wait_for(settled, "the agent to reconnect and settle the receipt", timeout=30)
    assert time.monotonic() - replugged < 10
    await assert_whole(store, till, 0)
    await sell(store, till)
    await assert_whole(store, till, 1)
