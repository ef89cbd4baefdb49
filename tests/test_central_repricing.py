"""The central re-prices each journalled sale with the rule-set version the till used."""

from __future__ import annotations

import dataclasses
import json

from central import repricing
from central.clock import parse_iso
from protocol import rules
from tests.test_central_sync_api import enrolled_till, new_customer, send
from tests.till_double import TestTill

LINES = [{"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "category": "sports",
          "brand": "", "flags": []}]


def priced_sale(till: TestTill, central, customer_id: str, *, redeem: int = 0,
                claim_earned: int | None = None, seen: rules.Customer | None = None):
    """A sale journalled as a real till would, optionally claiming other points."""
    row = central.db.execute("SELECT doc FROM rulesets WHERE version = 1").fetchone()
    rs = rules.compile_ruleset(json.loads(row["doc"]))
    at = till.sale(None).at  # the double's clock
    till.entries.pop()
    receipt = rules.Receipt(lines=tuple(
        rules.ReceiptLine(sku=ln["sku"], qty=ln["qty"], price=ln["price"],
                          amount=(ln["qty"] * ln["price"] + 500) // 1000,
                          category=ln["category"]) for ln in LINES), store="s1")
    customer = seen or rules.Customer(id=customer_id, balance=10_000)
    s = rules.settle(rs, receipt, customer, parse_iso(at), redeem)
    earned = s.earned if claim_earned is None else claim_earned
    e = till.sale(customer_id, earned=earned, redeemed=redeem)
    detail = {"settlement": s.to_dict(), "lines": LINES}
    if seen is not None:
        detail["customer"] = seen.to_dict()
    e = dataclasses.replace(e, detail=detail)
    e = dataclasses.replace(e, hash=e.compute_hash())
    till.entries[-1] = e
    return s


async def test_honest_sales_match_and_a_padded_one_raises_an_alert(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    honest = priced_sale(till, central, cid, redeem=100)
    assert honest.earned == 17  # 5 % of 350.00 paid in money, rounded down
    priced_sale(till, central, cid, claim_earned=500)  # the rules give 22
    resp = await send(central, till.batch())
    assert resp.status == 200 and (await resp.json())["acked_seq"] == 2
    assert repricing.reprice_pending(central.db, clock()) == 2
    assert repricing.progress(central.db) == {"checked": 2, "mismatches": 1, "behind": 0}
    alerts = [dict(r) for r in central.db.execute("SELECT kind, message FROM alerts")]
    assert [a["kind"] for a in alerts] == ["repricing-mismatch"]
    assert "entry 2" in alerts[0]["message"] and "earned 500" in alerts[0]["message"]
    assert "earned 22" in alerts[0]["message"]
    assert repricing.reprice_pending(central.db, clock()) == 0  # each entry once


async def test_a_till_pricing_with_a_profile_the_central_never_gave_is_reported(central, clock):
    till = await enrolled_till(central)
    cid = await new_customer(central, bonus=1000)
    given = rules.Customer(id=cid, balance=1000)
    priced_sale(till, central, cid, seen=given)  # what the central sent: fine
    invented = rules.Customer(id=cid, balance=1000, segments=frozenset({"vip"}))
    priced_sale(till, central, cid, seen=invented)
    assert (await send(central, till.batch())).status == 200
    assert repricing.reprice_pending(central.db, clock()) == 2
    assert repricing.progress(central.db)["mismatches"] == 1
    message = central.db.execute("SELECT message FROM alerts").fetchone()["message"]
    assert "entry 2" in message and "segments ['vip']" in message
