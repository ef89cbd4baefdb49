"""The store's own clock and place, on real processes: the agent and the central on a UTC
system clock, a Moscow store in region "moscow". A 17:00–19:00 campaign for the region
applies at 17:30 Moscow time and not at 17:30 UTC, the central's re-pricing agrees, and the
points activate at midnight in Moscow after the return window."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime

from protocol.rules import default_ruleset_doc
from tillpoint.processes import wait_for
from tillpoint.store_harness import StoreHarness

CARD = "2990000000019"
SHOES = {"sku": "100", "name": "Running shoes", "qty": 1000, "price": 500000,
         "category": "sports/shoes", "vat": "22"}
# 17:30 in Moscow (UTC+3) on 1 March 2027 is 14:30 UTC.
MOSCOW_1730 = datetime(2027, 3, 1, 14, 30, tzinfo=UTC)
UTC_1730 = datetime(2027, 3, 1, 17, 30, tzinfo=UTC)


def moscow_store_rules() -> dict:
    doc = copy.deepcopy(default_ruleset_doc())
    doc["stores"] = {"store-1": {"time_zone": "Europe/Moscow", "region": "moscow"}}
    doc["campaigns"].append({
        "id": "evening-moscow", "name": "Evening bonus in Moscow", "priority": 10,
        "when": {"hours": [{"from": "17:00", "to": "19:00"}], "regions": ["moscow"]},
        "effect": {"type": "per_receipt", "points": 100}})
    return doc


async def test_a_moscow_store_is_judged_on_moscow_time_on_a_utc_machine(tmp_path):
    async with StoreHarness(tmp_path, movable_clock=True) as store:
        store.env["TZ"] = "UTC"  # every process's system clock and zone: UTC
        await store.start_central()
        store.set_time(MOSCOW_1730)
        version = (await store.office("PUT", "/api/v1/ruleset",
                                      {"doc": moscow_store_rules(), "actor": "test"}))["version"]
        cid = (await store.office("POST", "/api/v1/customers", {"card_number": CARD}))["id"]
        till = await store.add_till("till-1")

        async def has_rules() -> bool | None:
            status = await store.pos(till, "GET", "/pos/v1/status")
            return True if status["ruleset_version"] == version else None

        await wait_for(has_rules, "the till to receive the rule set")
        await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})

        priced = await store.pos(till, "POST", "/pos/v1/price",
                                 {"customer_id": cid, "lines": [SHOES]})
        assert priced["earned"] == 250 + 100, priced  # 5 % and the evening bonus
        sale = await store.pos(till, "POST", "/pos/v1/receipts",
                               {"customer_id": cid, "lines": [SHOES]})
        assert sale["earned"] == 350

        store.set_time(UTC_1730)  # 20:30 in Moscow: the evening is over there
        priced = await store.pos(till, "POST", "/pos/v1/price",
                                 {"customer_id": cid, "lines": [SHOES]})
        assert priced["earned"] == 250, priced
        later = await store.pos(till, "POST", "/pos/v1/receipts",
                                {"customer_id": cid, "lines": [SHOES]})
        assert later["earned"] == 250

        # The central re-prices both sales on Moscow time too: no mismatch.
        await store.wait_synced()

        async def repriced() -> dict | None:
            progress = await store.office("GET", "/api/v1/repricing")
            return progress if progress["behind"] == 0 and progress["checked"] >= 2 else None

        progress = await wait_for(repriced, "the central to re-price the sales")
        assert progress["mismatches"] == 0, progress
        # The till's lots with the rule set's dates come with its next pull (a sale's points
        # are provisional until re-priced, central.credits).
        after = time.time()

        async def pulled() -> bool | None:
            status = await store.pos(till, "GET", "/pos/v1/status")
            return True if (status["sync"]["last_pull_ok"] or 0) > after else None

        await wait_for(pulled, "the till to pull after the re-pricing")

        # Both sales were on 1 March in Moscow: pending through 15 March, Moscow time,
        # spendable from midnight in Moscow (21:00 UTC on the 15th).
        store.set_time(datetime(2027, 3, 15, 20, 59, tzinfo=UTC))  # 23:59 in Moscow
        bal = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
        assert bal == {"available": 0, "pending": 600, "debt": 0}
        store.set_time(datetime(2027, 3, 15, 21, 0, 30, tzinfo=UTC))  # 00:00:30 in Moscow
        bal = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
        assert bal == {"available": 600, "pending": 0, "debt": 0}
        assert (await store.pos(till, "POST", "/pos/v1/identify",
                                {"card_number": CARD}))["balance"] == \
            {"available": 600, "pending": 0}
