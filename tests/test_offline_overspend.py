"""Two tills, cut off from the central, both let the same customer spend: the caps bound the
overspend, the cashier is told why a redemption is refused, earning goes on, and the central
settles the overspend as debt with an alert."""

from __future__ import annotations

import pytest

from tests.databases import ON_BOTH_DATABASES
from tests.fault_proxy import FaultPlan, FaultProxy
from tillpoint.store_harness import ApiError, StoreHarness

CARD = "2990000000019"
SHOES = {"sku": "100", "name": "Running shoes", "qty": 1000, "price": 500000,
         "category": "sports/shoes", "vat": "22"}
CAPS = {"redeem_per_receipt": 300, "redeem_per_card_day": 400, "till_outstanding": 5000,
        "max_offline_s": 3600, "actor": "risk@head-office"}


@ON_BOTH_DATABASES
async def test_overspend_across_two_offline_tills_stays_within_caps(tmp_path,
        store_database: str | None):
    async with StoreHarness(tmp_path, database=store_database) as store:
        await store.start_central()
        proxy = FaultProxy(store.central_url, FaultPlan(rate=0.0))
        store.till_central_url = await proxy.start()
        try:
            await store.office("PUT", "/api/v1/offline-caps", CAPS)
            cid = (await store.office("POST", "/api/v1/customers",
                                      {"card_number": CARD, "welcome_bonus": 500}))["id"]
            tills = [await store.add_till(f"till-{k}", agent_args=("--max-backoff", "1"))
                     for k in (1, 2)]
            for till in tills:
                who = await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})
                assert who["balance"]["available"] == 500
            proxy.down = True  # the store's line to head office is cut

            spent = 0
            for till in tills:
                priced = await store.pos(till, "POST", "/pos/v1/price",
                                         {"customer_id": cid, "lines": [SHOES]})
                assert priced["max_redeemable"] == 300
                assert "300 points per receipt" in priced["redeem_reason"]
                await store.present(till, cid)  # the app's code, checked offline
                sale = await store.pos(till, "POST", "/pos/v1/receipts",
                                       {"customer_id": cid, "lines": [SHOES], "redeem": 300})
                assert sale["earned"] > 0  # earning is never capped
                priced = await store.pos(till, "POST", "/pos/v1/price",
                                         {"customer_id": cid, "lines": [SHOES]})
                assert priced["max_redeemable"] == 100
                assert "daily limit of 400 points per card" in priced["redeem_reason"]
                await store.present(till, cid)  # the sale before took the last one
                with pytest.raises(ApiError) as refused:  # and this refusal keeps it
                    await store.pos(till, "POST", "/pos/v1/receipts",
                                    {"customer_id": cid, "lines": [SHOES], "redeem": 200})
                assert refused.value.status == 409
                assert "daily limit of 400 points per card (300 spent today)" in \
                    refused.value.body["error"]
                await store.pos(till, "POST", "/pos/v1/receipts",
                                {"customer_id": cid, "lines": [SHOES], "redeem": 100})
                spent += 400
            # Each till alone kept within the balance it knew; together they did not.
            assert spent == 800

            proxy.down = False
            await store.wait_synced(timeout=60)
            balance = (await store.office("GET", f"/api/v1/customers/{cid}"))["balance"]
            assert balance["available"] == 500 - spent and balance["debt"] == spent - 500
            assert spent - 500 <= CAPS["redeem_per_card_day"] * len(tills)
            alerts = (await store.office("GET", "/api/v1/alerts"))["alerts"]
            overspend = [a for a in alerts if a["kind"] == "offline-overspend"]
            assert overspend and all(a["customer_id"] == cid for a in overspend)
        finally:
            await proxy.close()
