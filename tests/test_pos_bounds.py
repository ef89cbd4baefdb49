"""No value the POS sends breaks the till (issue 9, part 3): bounds are checked before
anything is printed, each bad value gets a 400 naming its field, and nothing is left pending
to block the next receipt."""

from __future__ import annotations

from protocol import bounds
from tests.pos_rig import Rig

SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000}


async def post_raw(rig: Rig, path: str, raw: bytes):
    return await rig.client.post(path, data=raw, headers={
        **rig.auth, "Content-Type": "application/json"})


async def refused(resp, field: str) -> None:
    assert resp.status == 400, await resp.text()
    assert field in (await resp.json())["error"]


async def nothing_left(rig: Rig) -> None:
    """Nothing printed, nothing pending: the next receipt goes through."""
    assert rig.printer.documents == []
    resp = await rig.client.get("/pos/v1/pending", headers=rig.auth)
    assert (await resp.json())["pending"] == []
    resp = await rig.client.post("/pos/v1/receipts", headers=rig.auth, json={"lines": [SOCKS]})
    assert resp.status == 201, await resp.text()


async def test_a_million_units_at_12000_roubles_is_a_400_and_the_till_sells_on(rig: Rig):
    line = {"sku": "TV", "name": "TV", "qty": 1_000_000_000, "price": 1_200_000}
    for path in ("/pos/v1/receipts", "/pos/v1/price"):
        resp = await rig.client.post(path, headers=rig.auth, json={"lines": [line]})
        await refused(resp, "lines[0]")
        assert "qty x price" in (await resp.json())["error"]
    # Each line within bounds, the receipt not.
    half = {**line, "qty": 1_000_000, "price": bounds.MAX_MONEY // 1000}
    resp = await rig.client.post("/pos/v1/receipts", headers=rig.auth,
                                 json={"lines": [half, half]})
    await refused(resp, "lines come to")
    await nothing_left(rig)


async def test_text_must_be_valid_unicode_bounded_and_printable(rig: Rig):
    for raw, field in [
        (b'{"lines": [{"sku": "S1", "name": "a\\ud800", "qty": 1000, "price": 1}]}',
         "lines[0].name"),
        (b'{"lines": [{"sku": "S\\u0007", "qty": 1000, "price": 1}]}', "lines[0].sku"),
        (b'{"lines": [{"sku": "S1", "name": "' + b"n" * 201 + b'", "qty": 1000, "price": 1}]}',
         "lines[0].name"),
        (b'{"lines": [{"sku": "S1", "qty": 1000, "price": 1, "category": "' + b"c" * 201
         + b'"}]}', "lines[0].category"),
        (b'{"lines": [{"sku": "S1", "qty": 1000, "price": 1, "flags": ["\\udfff"]}]}',
         "lines[0].flags[0]"),
        (b'{"lines": [{"sku": "S1", "qty": 1000, "price": 1}], "customer_id": "\\ud83d"}',
         "customer_id"),
        (b'{"lines": [{"sku": "S1", "qty": 1000, "price": 45000}], "payments": {"cards": ['
         b'{"amount": 45000, "rrn": "1\\ud800", "approval_code": "A", "terminal_id": "T"}]}}',
         "payments.cards[0].rrn"),
    ]:
        await refused(await post_raw(rig, "/pos/v1/receipts", raw), field)
    await refused(await post_raw(rig, "/pos/v1/returns",
                                 b'{"receipt_id": "' + b"r" * 300 + b'", "lines": []}'),
                  "receipt_id")
    await nothing_left(rig)


async def test_numbers_beyond_their_bounds_name_their_field(rig: Rig):
    for body, field in [
        ({"lines": [SOCKS], "redeem": 2**63}, "redeem"),
        ({"lines": [{**SOCKS, "qty": 2**64}]}, "lines[0].qty"),
        ({"lines": [{**SOCKS, "price": -1}]}, "lines[0].price"),
        ({"lines": [SOCKS], "payments": {"cash": 2**70}}, "payments.cash"),
    ]:
        await refused(await rig.client.post("/pos/v1/receipts", headers=rig.auth, json=body),
                      field)
    await nothing_left(rig)


async def test_deep_json_is_refused_before_it_is_parsed(rig: Rig):
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"lines":' * 50_000 + b"1" + b"}" * 50_000):
        resp = await post_raw(rig, "/pos/v1/receipts", raw)
        assert resp.status == 400 and "deeper" in (await resp.json())["error"]
    await nothing_left(rig)
