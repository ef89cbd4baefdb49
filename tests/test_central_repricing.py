"""The central re-prices each journalled sale with the rule-set version the till used, the
customer as it sent them to that till, and the sale time ingest accepted."""

from __future__ import annotations

import dataclasses

from central import repricing
from tests.test_central_sync_api import enrolled_till, new_customer, send
from tests.test_till_takeover import pull, sale, sent_view


async def test_honest_sales_match_and_a_padded_one_raises_an_alert(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    seen = sent_view(await pull(central, till, clock), cid)
    honest = sale(till, central, seen, redeem=100)
    assert honest.earned == 17  # 5 % of 350.00 paid in money, rounded down
    sale(till, central, seen, claim_earned=500)  # the rules give 22
    resp = await send(central, till.batch())
    assert resp.status == 200 and (await resp.json())["acked_seq"] == 2
    assert repricing.reprice_pending(central.db, clock()) == 2
    assert repricing.progress(central.db) == {"checked": 2, "mismatches": 1, "behind": 0}
    alerts = [dict(r) for r in central.db.execute(
        "SELECT kind, message FROM alerts WHERE kind = 'repricing-mismatch'")]
    assert len(alerts) == 1
    assert "entry 2" in alerts[0]["message"] and "earned 500" in alerts[0]["message"]
    assert "earned 22" in alerts[0]["message"]
    assert repricing.reprice_pending(central.db, clock()) == 0  # each entry once


async def test_a_till_pricing_with_a_profile_the_central_never_gave_is_reported(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    seen = sent_view(await pull(central, till, clock), cid)
    sale(till, central, seen)  # what the central sent: fine
    sale(till, central, dataclasses.replace(seen, segments=frozenset({"vip"})))
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 2
    assert repricing.progress(central.db)["mismatches"] == 1
    message = central.db.execute("SELECT message FROM alerts WHERE kind = 'repricing-mismatch'"
                                 ).fetchone()["message"]
    assert "entry 2" in message and "segments ['vip']" in message


async def test_an_entry_without_the_customer_it_was_priced_for_is_not_credited(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    await pull(central, till, clock)
    till.sale(cid, earned=40)  # no detail: nothing to re-price with
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    message = central.db.execute("SELECT message FROM alerts WHERE kind = 'repricing-mismatch'"
                                 ).fetchone()["message"]
    assert "no view of the customer" in message
    resp = await central.get(f"/api/v1/customers/{cid}", headers=central.admin)
    assert (await resp.json())["balance"] == {"available": 1000, "pending": 0, "debt": 0}
