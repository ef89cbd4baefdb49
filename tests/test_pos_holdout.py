"""Control groups at a real till: the agent's checkout prices with the rule set's holdout,
journals which campaigns held the customer out, and the central's re-pricing of the
journalled entry agrees (the same engine decides, from the same document)."""

from __future__ import annotations

from datetime import datetime

from agent import journal
from central.repricing import check_entry
from protocol import rules
from protocol.rules.holdout import held_out
from protocol.wire import pack
from tests.pos_rig import Rig

SALT = "till-salt"
SOCKS = {"sku": "S1", "name": "Socks", "qty": 2000, "price": 45000, "vat": "22"}


def holdout_doc() -> dict:
    doc = rules.default_ruleset_doc()
    doc["holdout_salt"] = SALT
    doc["campaigns"].append({"id": "extra", "name": "10 % more", "holdout": 50,
                             "effect": {"type": "percent", "percent": 10}})
    return doc


async def test_the_till_holds_out_whom_the_hash_says_and_re_pricing_agrees(rig: Rig):
    doc = holdout_doc()
    rig.db.execute("UPDATE rulesets SET doc = ? WHERE version = 1", [pack(doc)])
    ids = [rig.add_customer(f"c-{i}", f"29900000{i:04d}0") for i in range(12)]
    for cid in [*ids, None]:
        resp = await rig.client.post("/pos/v1/receipts", headers=rig.auth,
                                     json={"customer_id": cid, "lines": [SOCKS]})
        assert resp.status == 201, await resp.text()
    sales = journal.entries_from(rig.db, 1, 100)
    out = {e.customer_id for e in sales
           if "extra" in e.detail["settlement"].get("held_out", ())}
    expected = {cid for cid in ids if held_out(SALT, "extra", cid, 5000)}
    assert out == expected and 0 < len(out) < len(ids)  # both groups, as the hash says
    for e in sales:
        given = {x["campaign"] for ln in e.detail["settlement"]["lines"]
                 for x in ln["earned"]}
        if e.customer_id is None:
            assert given == set() and "held_out" not in e.detail["settlement"]
            continue
        # 5 % base on 900.00 is 45 points; the campaign's 10 % is 90 more, or nothing
        assert given == ({"base"} if e.customer_id in out else {"base", "extra"})
        assert e.earned == (45 if e.customer_id in out else 135)
        verdict = check_entry(
            {"ruleset_version": 1, "store": e.store, "redeemed": e.redeemed,
             "earned": e.earned, "detail": e.detail},
            rules.compile_ruleset(doc), rules.Customer.from_dict(e.detail["customer"]),
            datetime.fromisoformat(e.at))
        assert verdict.ok, verdict.message
