"""Every receipt and return names its cashier: checked where it enters, journalled in the
hash-chained entry, synced, and shown by the central."""

from __future__ import annotations

import pytest

from agent import journal
from protocol.journal import JournalEntry
from protocol.wire import InvalidMessage, pack, unpack
from tests.pos_rig import CASHIER, Rig
from tillpoint.store_harness import StoreHarness

SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000, "vat": "22"}


def entries(rig: Rig) -> list[JournalEntry]:
    return journal.entries_from(rig.db, 1, 100)


async def test_a_receipt_or_return_without_a_cashier_is_refused_naming_it(rig: Rig):
    auth = {"Authorization": rig.auth["Authorization"]}  # no Cashier-Id
    resp = await rig.client.post("/pos/v1/receipts", json={"lines": [SOCKS]}, headers=auth)
    assert resp.status == 400
    assert "cashier is required" in (await resp.json())["error"]
    sold = await (await rig.client.post("/pos/v1/receipts", json={"lines": [SOCKS]},
                                        headers=rig.auth)).json()
    resp = await rig.client.post("/pos/v1/returns", headers=auth, json={
        "receipt_id": sold["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
    assert resp.status == 400 and "cashier" in (await resp.json())["error"]
    assert len(rig.printer.documents) == 1 and len(entries(rig)) == 1


@pytest.mark.parametrize(("cashier", "why"), [
    ("", "must not be empty"), ("   ", "must not be empty"), ("x" * 65, "at most 64"),
    ("anna\n", "printable"), ("anna\x00", "printable"), (17, "must be a string"),
    (None, "is required"), ("\ud800", "printable"),
])
async def test_a_bad_cashier_id_gets_400_naming_the_field(rig: Rig, cashier, why):
    for path, body in [("/pos/v1/receipts", {"lines": [SOCKS]}),
                       ("/pos/v1/returns", {"receipt_id": "r", "lines": [{"line": 0,
                                                                          "qty": 1}]})]:
        resp = await rig.client.post(path, json={**body, "cashier": cashier},
                                     headers={"Authorization": rig.auth["Authorization"]})
        error = (await resp.json())["error"]
        assert resp.status == 400 and error.startswith("cashier") and why in error, error
    assert rig.printer.documents == [] and entries(rig) == []


async def test_header_and_body_must_name_the_same_cashier(rig: Rig):
    resp = await rig.client.post("/pos/v1/receipts", json={"lines": [SOCKS], "cashier": "olga"},
                                 headers=rig.auth)
    assert resp.status == 400 and "different cashiers" in (await resp.json())["error"]
    resp = await rig.client.post("/pos/v1/receipts", json={"lines": [SOCKS], "cashier": CASHIER},
                                 headers=rig.auth)
    assert resp.status == 201


async def test_the_cashier_is_in_the_hash_chained_entry(rig: Rig):
    sold = await (await rig.client.post(
        "/pos/v1/receipts", json={"lines": [SOCKS], "cashier": "Ольга-2"},
        headers={"Authorization": rig.auth["Authorization"]})).json()
    resp = await rig.client.post("/pos/v1/returns", headers=rig.auth, json={
        "receipt_id": sold["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
    assert resp.status == 201
    sale, back = entries(rig)
    assert (sale.cashier, back.cashier) == ("Ольга-2", CASHIER)
    assert journal.verify(rig.db).ok
    # The hash covers it: another cashier is another entry.
    assert unpack(sale.encoded_body())["cashier"] == "Ольга-2"
    forged = JournalEntry(**{**sale.to_wire(), "cashier": "someone-else"})
    assert forged.compute_hash() != sale.hash


def test_an_entry_without_a_cashier_keeps_its_bytes_and_a_bad_one_is_refused():
    entry = JournalEntry(seq=1, epoch="e", prev_hash="p", kind="sale", receipt_id="r",
                         at="2026-11-30T10:00:00+00:00", store="s", customer_id=None,
                         ruleset_version=1, total=100, fiscal_doc=1)
    # journalled before cashiers were carried: the same bytes, so the same hash as then
    assert "cashier" not in unpack(entry.encoded_body())
    for bad in (7, "", "x" * 65, "a\tb"):
        with pytest.raises(InvalidMessage, match="cashier"):
            JournalEntry.from_encoded_body(pack({**entry.body(), "cashier": bad}))
    assert JournalEntry.from_encoded_body(
        pack({**entry.body(), "cashier": "c-1"})).cashier == "c-1"


async def test_the_central_shows_each_entrys_cashier(store: StoreHarness):
    till = store.tills[0]
    till.cashier = "anna-01"
    sold = await store.pos(till, "POST", "/pos/v1/receipts", {"lines": [SOCKS]})
    till.cashier = "boris-02"
    back = await store.pos(till, "POST", "/pos/v1/returns", {
        "receipt_id": sold["receipt_id"], "lines": [{"line": 0, "qty": 1000}]})
    await store.wait_synced()
    held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
    assert [(e["receipt_id"], e["cashier"]) for e in held] == [
        (sold["receipt_id"], "anna-01"), (back["receipt_id"], "boris-02")]
