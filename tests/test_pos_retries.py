"""The POS retries safely: an idempotency key gets the outcome of the first request.

Whatever happened between — a printer fault, a full disk, a crash (tests/
test_first_receipt_of_shift.py) — a retry under the same key is told the receipt is pending,
done (with its fiscal document) or cancelled, and nothing is printed or credited twice.
Real agent, real simulator over ptys, real SQLite files; the full disk is a small tmpfs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
from pathlib import Path

import pytest

from tests.test_crash_safety import SOCKS, assert_whole, checkout_dies, member
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness, Till, call


async def receipt_docs(store: StoreHarness, till: Till) -> list[int]:
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    return [d["number"] for d in docs if d["kind"] == "receipt"]


async def failing(store: StoreHarness, till: Till, path: str, body: dict,
                  status: int) -> dict:
    with pytest.raises(ApiError) as e:
        await store.pos(till, "POST", path, body)
    assert e.value.status == status, e.value.body
    return e.value.body


async def test_a_retry_gets_pending_then_done_and_nothing_twice(store: StoreHarness):
    till = store.tills[0]
    cid = await member(store)
    sale = {"customer_id": cid, "lines": [SOCKS], "idempotency_key": "pos-7-0001"}
    await store.control(till, "POST", "/faults", {"paper_out_after_lines": 12})
    first = await failing(store, till, "/pos/v1/receipts", sale, 503)
    pending = first["pending_receipt_id"]

    again = await failing(store, till, "/pos/v1/receipts", sale, 503)
    assert again["state"] == "pending" and again["pending_receipt_id"] == pending
    other = await failing(store, till, "/pos/v1/receipts", {**sale, "redeem": 10}, 422)
    assert "another request" in other["error"]

    await store.control(till, "POST", "/faults", {"replace_paper": True})
    done = await store.pos(till, "POST", f"/pos/v1/pending/{pending}/resume")
    replay = await store.pos(till, "POST", "/pos/v1/receipts", sale)
    assert replay == done and replay["receipt_id"] == pending
    # The key in the header is the same key.
    url = till.pos_url + "/pos/v1/receipts"
    by_header = await call(store.http, "POST", url,
                           headers={**till.pos_headers, "Idempotency-Key": "pos-7-0001"},
                           json_body={k: v for k, v in sale.items() if k != "idempotency_key"})
    assert by_header == done
    assert await receipt_docs(store, till) == [done["fiscal_doc"]]

    sold = await store.pos(till, "POST", "/pos/v1/receipts",
                           {**sale, "idempotency_key": "pos-7-0002"})
    assert await store.pos(till, "POST", "/pos/v1/receipts",
                           {**sale, "idempotency_key": "pos-7-0002"}) == sold
    back = {"receipt_id": sold["receipt_id"], "lines": [{"line": 0, "qty": 1000}],
            "idempotency_key": "pos-7-0003"}
    returned = await store.pos(till, "POST", "/pos/v1/returns", back)
    assert await store.pos(till, "POST", "/pos/v1/returns", back) == returned
    # A receipt's key on the returns endpoint names another request.
    await failing(store, till, "/pos/v1/returns", {**back, "idempotency_key": "pos-7-0002"}, 422)
    await assert_whole(store, till, 3)
    held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
    assert len(held) == 3


async def test_idempotency_keys_are_checked_where_they_enter(store: StoreHarness):
    till = store.tills[0]
    url = till.pos_url + "/pos/v1/receipts"
    for headers, key, what in [({}, "has space", "printable ASCII"), ({}, 7, "must be a string"),
                               ({}, "x" * 201, "1 to 200"),
                               ({"Idempotency-Key": "a"}, "b", "differ")]:
        body = {"lines": [SOCKS], **({"idempotency_key": key} if key is not None else {})}
        with pytest.raises(ApiError) as e:
            await call(store.http, "POST", url, json_body=body,
                       headers={**till.pos_headers, **headers})
        assert e.value.status == 400 and what in e.value.body["error"]
    assert await receipt_docs(store, till) == []


def fill(directory: Path) -> Path:
    """Write zeros until the file system says it is full."""
    filler = directory / "filler"
    chunk = bytes(64 * 1024)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as f:
        while True:  # the last few bytes too
            f.write(b"\0" * 512)
    return filler


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "8m"):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the full-disk test mounts a small tmpfs, which this machine refused:"
                    f" {done.stderr.strip() or done.returncode} (it needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_names_the_disk_and_the_receipt_is_journalled_once(tmp_path: Path):
    with small_tmpfs(tmp_path / "till-1-state") as disk:
        async with StoreHarness(tmp_path / "store") as store:
            await store.start_central()
            till = await store.add_till("till-1", state=disk)
            cid = await member(store)
            await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})  # a shift
            await store.control(till, "POST", "/faults", {"slow_printing_ms": 300})
            sale = {"customer_id": cid, "lines": [SOCKS], "idempotency_key": "k-1"}
            selling = asyncio.create_task(store.pos(till, "POST", "/pos/v1/receipts", sale))

            async def receipt_open() -> bool | None:
                state = await store.control(till, "GET", "/printer/state")
                return True if state["receipt"] is not None else None

            # The pending row is written before the printer opens the receipt.
            await wait_for(receipt_open, "the printer to open the receipt", timeout=30)
            filler = fill(disk)
            with pytest.raises(ApiError) as e:
                await selling
            first = e.value
            assert first.status == 507, first.body
            assert str(disk) in first.body["error"] and "disk is full" in first.body["error"]
            printed = first.body["fiscal_doc"]
            assert first.body["pending_receipt_id"]
            assert printed in await receipt_docs(store, till)

            # The next customer is refused for the same reason: the disk, not the printer.
            later = await failing(store, till, "/pos/v1/receipts",
                                  {"lines": [SOCKS], "idempotency_key": "k-2"}, 507)
            assert str(disk) in later["error"] and "printer" not in later["error"]
            retry = await failing(store, till, "/pos/v1/receipts", sale, 507)
            assert retry["pending_receipt_id"] == first.body["pending_receipt_id"]
            status = await store.pos(till, "GET", "/pos/v1/status")
            assert status["journal"]["last_seq"] == 1
            assert status["held_by_full_disk"] == [
                {"receipt_id": first.body["pending_receipt_id"], "fiscal_doc": printed}]

            filler.unlink()

            async def journalled() -> bool | None:
                status = await store.pos(till, "GET", "/pos/v1/status")
                return True if status["journal"]["last_seq"] == 2 else None

            await wait_for(journalled, "the held receipt to be journalled", timeout=30)
            done = await store.pos(till, "POST", "/pos/v1/receipts", sale)
            assert done["fiscal_doc"] == printed and done["seq"] == 2
            assert done["receipt_id"] == first.body["pending_receipt_id"]
            await store.control(till, "POST", "/faults", {"clear": True})
            await assert_whole(store, till, 2)
            balance = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
            assert balance["pending"] == done["earned"]  # credited once


async def test_killed_after_printing_a_retry_gets_the_printed_receipt(store: StoreHarness):
    till = store.tills[0]
    cid = await member(store)
    store.procs.stop(store.agent_process(till))
    await store.start_agent(till, env={"TILLPOINT_FAILPOINTS": "after_print"})
    sale = {"customer_id": cid, "lines": [SOCKS], "redeem": 50, "idempotency_key": "pos-9-1"}
    await store.present(till, cid)
    await checkout_dies(store, till, sale)
    printed = await receipt_docs(store, till)
    assert len(printed) == 1
    await store.start_agent(till)  # reconciles: the printed receipt is journalled once
    done = await store.pos(till, "POST", "/pos/v1/receipts", sale)
    assert done["fiscal_doc"] == printed[0] and done["seq"] == 1 and done["redeemed"] == 50
    assert await receipt_docs(store, till) == printed
    await assert_whole(store, till, 1)
    balance = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
    assert balance["available"] == 250  # spent once
