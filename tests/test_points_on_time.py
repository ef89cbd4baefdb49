"""Points mature and expire on time, on real processes: a central and two tills, the store's
clock moved by days (StoreHarness(movable_clock=True)), one till cut off from head office.

Bought on day 0 with a 14-day window, points are pending through 23:59 on day 14 in the
store's time zone and spendable from midnight; a till offline since day 10 lets the customer
spend them on day 15 from the lots' own dates; expired points are never spendable at a till
that has not heard of their expiry, and nothing raises an overspend alert.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime, timedelta

import pytest

from protocol.rules import default_ruleset_doc
from tests.databases import ON_BOTH_DATABASES
from tests.fault_proxy import FaultPlan, FaultProxy
from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness, Till

CARD = "2990000000019"
SHOES = {"sku": "100", "name": "Running shoes", "qty": 1000, "price": 500000,
         "category": "sports/shoes", "vat": "22"}
DAY0 = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)  # 10:00 in the store (UTC)


def day(n: int, hour: int = 10, minute: int = 0) -> datetime:
    return DAY0.replace(hour=hour, minute=minute) + timedelta(days=n)


async def office_balance(store: StoreHarness, cid: str) -> dict:
    return (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]


async def till_balance(store: StoreHarness, till: Till) -> dict:
    return (await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD}))["balance"]


@ON_BOTH_DATABASES
async def test_points_mature_on_time_at_head_office_and_at_an_offline_till(tmp_path,
        store_database: str | None):
    async with StoreHarness(tmp_path, movable_clock=True, database=store_database) as store:
        await store.start_central()
        store.set_time(DAY0)
        doc = copy.deepcopy(default_ruleset_doc())
        doc["programme"]["lifetime"] = {"days": 30}
        await store.office("PUT", "/api/v1/ruleset", {"doc": doc, "actor": "test"})
        # A till may be offline for weeks here: no cap on time offline.
        await store.office("PUT", "/api/v1/offline-caps",
                           {"max_offline_s": None, "actor": "risk@head-office"})
        cid = (await store.office("POST", "/api/v1/customers", {"card_number": CARD}))["id"]
        selling = await store.add_till("till-1")
        proxy = FaultProxy(store.central_url, FaultPlan(rate=0.0))
        store.till_central_url = await proxy.start()
        try:
            offline = await store.add_till("till-2", agent_args=("--max-backoff", "1"))

            # Day 0: 5 % of 5,000.00, pending through the 14-day window.
            sale = await store.pos(selling, "POST", "/pos/v1/receipts",
                                   {"customer_id": cid, "lines": [SHOES]})
            assert sale["earned"] == 250
            await store.wait_synced()

            # Day 10: till-2 has the customer's lots, then loses head office.
            store.set_time(day(10))

            # Pulled after the central re-priced the sale: the lot with the rule set's dates
            # (a till's claimed points are provisional until then, central.credits).
            repriced = time.time()

            async def knows_the_lot() -> dict | None:
                status = await store.pos(offline, "GET", "/pos/v1/status")
                if (status["sync"]["last_pull_ok"] or 0) <= repriced:
                    return None
                bal = await till_balance(store, offline)
                return bal if bal["pending"] == 250 else None

            assert await wait_for(knows_the_lot, "till-2 to receive the customer") == \
                {"available": 0, "pending": 250}
            proxy.down = True

            # 23:59 on day 14: still pending, at head office and at the till.
            store.set_time(day(14, 23, 59))
            assert await office_balance(store, cid) == {"available": 0, "pending": 250,
                                                        "debt": 0}
            assert await till_balance(store, offline) == {"available": 0, "pending": 250}
            await store.present(offline, cid)  # the app's code, checked offline
            with pytest.raises(ApiError) as refused:
                await store.pos(offline, "POST", "/pos/v1/receipts",
                                {"customer_id": cid, "lines": [SHOES], "redeem": 100})
            assert refused.value.status == 409

            # Day 15: available from midnight; spent at the till offline since day 10.
            store.set_time(day(15, 0, 1))
            assert await office_balance(store, cid) == {"available": 250, "pending": 0,
                                                        "debt": 0}
            assert await till_balance(store, offline) == {"available": 250, "pending": 0}
            await store.present(offline, cid)
            spend = await store.pos(offline, "POST", "/pos/v1/receipts",
                                    {"customer_id": cid, "lines": [SHOES], "redeem": 200})
            assert (spend["redeemed"], spend["earned"]) == (200, 240)
            assert spend["balance"] == {"available": 50, "pending": 240}

            proxy.down = False
            await store.wait_synced()
            assert await office_balance(store, cid) == {"available": 50, "pending": 240,
                                                        "debt": 0}
            # Day 20: till-2 hears the latest (pulled after the re-pricing), then is cut off.
            repriced = time.time()
            store.set_time(day(20))

            async def heard() -> dict | None:
                status = await store.pos(offline, "GET", "/pos/v1/status")
                if (status["sync"]["last_pull_ok"] or 0) <= repriced:
                    return None
                bal = await till_balance(store, offline)
                return bal if bal == {"available": 50, "pending": 240} else None

            await wait_for(heard, "till-2 to receive the synced balance")
            proxy.down = True

            # Day 46: the first lot (day 15 + 30 days) expired on day 45 with 50 unspent;
            # the second activated on day 30. The offline till knows both from their dates.
            store.set_time(day(46))
            assert await office_balance(store, cid) == {"available": 240, "pending": 0,
                                                        "debt": 0}
            assert await till_balance(store, offline) == {"available": 240, "pending": 0}
            await store.present(offline, cid)  # kept by the refusal for the next receipt
            with pytest.raises(ApiError) as refused:
                await store.pos(offline, "POST", "/pos/v1/receipts",
                                {"customer_id": cid, "lines": [SHOES], "redeem": 290})
            assert refused.value.status == 409
            await store.pos(offline, "POST", "/pos/v1/receipts",
                            {"customer_id": cid, "lines": [SHOES], "redeem": 240})
            proxy.down = False
            await store.wait_synced()
            after = await office_balance(store, cid)
            assert (after["available"], after["debt"]) == (0, 0)
            alerts = (await store.office("GET", "/api/v1/alerts"))["alerts"]
            assert [a for a in alerts if a["kind"] == "offline-overspend"] == []
        finally:
            store.till_central_url = None
            await proxy.close()
