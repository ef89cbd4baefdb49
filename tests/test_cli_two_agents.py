"""`tillpoint agent status|shift close --state DIR` on a machine with two agents.

Each must reach its own till's agent (the port it listens on, from its state directory) and
never show, or close the shift of, the other one.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tillpoint.store_harness import StoreHarness, Till


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillpoint", "agent", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status(till: Till) -> dict:
    code, out, err = await cli("status", "--state", str(till.state))
    assert code == 0, err
    return json.loads(out)


async def test_status_and_shift_close_reach_their_own_till(store: StoreHarness):
    one = store.tills[0]
    two = await store.add_till("till-2")
    assert one.till_id != two.till_id
    for till in (one, two):
        shown = await status(till)
        assert shown["till_id"] == till.till_id and "printer" in shown  # the running agent

    # till-2's agent stops, and its agent.toml names the port till-1's agent listens on.
    await store.pos(one, "POST", "/pos/v1/receipts",
                    {"lines": [{"sku": "1", "qty": 1000, "price": 100, "vat": "22"}]})  # a shift
    store.procs.stop(store.agent_process(two))
    (two.state / "agent.toml").write_text(f"pos_port = {one.pos_url.rsplit(':', 1)[1]}\n")
    shown = await status(two)
    assert shown["running"] is False and shown["till_id"] == two.till_id
    # Each till has its own POS secret, so till-1's agent refuses till-2's: nothing shown.
    assert "another till's agent" in shown["pos_port"] and one.till_id not in json.dumps(shown)

    code, _, err = await cli("shift", "close", "--state", str(two.state))
    assert code == 1 and "another till's agent" in err
    state = await store.control(one, "GET", "/printer/state")
    assert state["shift"]["open"] is True  # till-1's shift was left alone
