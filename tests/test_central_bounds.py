"""No value breaks the chain at the central: each attack of issue 9 part 3 that came in
through the head-office API, tried again, now gets a 4xx naming the field."""

from __future__ import annotations

from protocol.request_auth import sign_request
from protocol.rules import default_ruleset_doc
from tests.test_central_sync_api import enrolled_till, new_customer

CARD = "2990000000012"


def signed_get(till, path: str, clock) -> dict[str, str]:
    return sign_request(till.key, till.till_id, "GET", path, b"", int(clock().timestamp()))


async def post_raw(central, path: str, raw: bytes):
    return await central.post(path, data=raw, headers={
        **central.admin, "Content-Type": "application/json"})


async def error_of(resp) -> str:
    return (await resp.json())["error"]


async def test_huge_bonus_and_adjustment_are_refused_and_sync_goes_on(central, clock):
    till = await enrolled_till(central)
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": CARD, "welcome_bonus": 2**62})
    assert resp.status == 400 and "welcome_bonus" in await error_of(resp)
    cid = await new_customer(central, bonus=1_000_000_000)
    for points in (2**62, 2**63, -(2**63) - 1, 10**9 + 1):
        resp = await central.post(f"/api/v1/customers/{cid}/adjustments", headers=central.admin,
                                  json={"points": points, "actor": "a", "reason": "r"})
        assert resp.status == 400, points
        assert "points" in await error_of(resp)
    path = "/sync/v1/customers?since=0"
    resp = await central.get(path, headers=signed_get(till, path, clock))
    assert resp.status == 200
    assert (await resp.json())["customers"][0]["available"] == 1_000_000_000


async def test_a_balance_beyond_its_bound_is_refused(central):
    cid = await new_customer(central, bonus=1_000_000_000)
    central.db.execute("UPDATE lots SET remaining = ?, points = ? WHERE customer_id = ?",
                       (10**12 - 10, 10**12 - 10, cid))
    resp = await central.post(f"/api/v1/customers/{cid}/adjustments", headers=central.admin,
                              json={"points": 11, "actor": "a", "reason": "r"})
    assert resp.status == 422 and "points" in await error_of(resp)


async def test_a_customer_the_tills_could_not_take_is_withheld_with_one_alert(central, clock):
    till = await enrolled_till(central)
    bad = await new_customer(central, bonus=10)
    good = await new_customer(central, card="2990000000029", bonus=20)
    # What the API no longer lets in, written behind its back: two lots summing past 2^63.
    central.db.execute("UPDATE lots SET remaining = ?, points = ? WHERE customer_id = ?",
                       (2**62, 2**62, bad))
    central.db.execute(
        "INSERT INTO lots (customer_id, points, remaining, activates_at, expires_at, status)"
        " SELECT customer_id, points, remaining, activates_at, expires_at, status FROM lots"
        " WHERE customer_id = ?", (bad,))
    path = "/sync/v1/customers?since=0"
    for _ in range(2):
        resp = await central.get(path, headers=signed_get(till, path, clock))
        assert resp.status == 200
        assert [c["id"] for c in (await resp.json())["customers"]] == [good]
    alerts = central.db.execute("SELECT customer_id FROM alerts WHERE kind = 'delta-withheld'")
    assert [r[0] for r in alerts] == [bad]


async def test_integers_beyond_64_bits_are_a_400(central):
    raw = b'{"card_number": "2990000000012", "welcome_bonus": 9223372036854775808}'
    resp = await post_raw(central, "/api/v1/customers", raw)
    assert resp.status == 400 and "welcome_bonus" in await error_of(resp)
    resp = await post_raw(central, "/api/v1/enrolment-tokens",
                          b'{"store": "s", "ttl_hours": 9223372036854775808}')
    assert resp.status == 400 and "ttl_hours" in await error_of(resp)
    resp = await post_raw(central, "/api/v1/customers", b'{"welcome_bonus": 1' + b"0" * 5000
                          + b"}")
    assert resp.status == 400


async def test_unicode_digits_in_a_card_number_are_a_400(central):
    for number in ("٢٩٩٠٠٠٠٠٠٠٠١٢", "２９９０００００００１２", "²990000000012"):
        resp = await central.post("/api/v1/customers", headers=central.admin,
                                  json={"card_number": number})
        assert resp.status == 400, number
        resp = await central.post("/api/v1/customers/lookup", headers=central.admin,
                                  json={"card_number": number})
        assert resp.status == 400, number


async def test_a_lone_surrogate_is_a_400_naming_the_field(central):
    for field in ("name", "tier"):
        raw = b'{"card_number": "2990000000012", "' + field.encode() + b'": "a\\ud800b"}'
        resp = await post_raw(central, "/api/v1/customers", raw)
        assert resp.status == 400 and field in await error_of(resp)
    cid = await new_customer(central)
    resp = await central.patch(f"/api/v1/customers/{cid}", headers={
        **central.admin, "Content-Type": "application/json"}, data=b'{"segments": ["\\udfff"]}')
    assert resp.status == 400 and "segments[0]" in await error_of(resp)
    resp = await post_raw(central, f"/api/v1/customers/{cid}/adjustments",
                          b'{"points": 5, "actor": "\\ud83d", "reason": "r"}')
    assert resp.status == 400 and "actor" in await error_of(resp)


async def test_deep_json_is_refused_before_it_is_parsed(central):
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                b"[" * 100_000):
        resp = await post_raw(central, "/api/v1/customers", raw)
        assert resp.status == 400 and "deeper" in await error_of(resp)
    # Brackets inside strings are text, not nesting.
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": CARD, "name": "[" * 150})
    assert resp.status == 201


async def test_customers_without_a_phone_are_no_duplicates(central):
    for card, phone in (("2990000000012", ""), ("2990000000029", ""), ("2990000000036", " ")):
        resp = await central.post("/api/v1/customers", headers=central.admin,
                                  json={"card_number": card, "phone": phone})
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["phone"] is None
    resp = await central.post("/api/v1/customers", headers=central.admin,
                              json={"card_number": "2990000000043", "phone": "+7 (9) 1"})
    assert resp.status == 400 and "phone" in await error_of(resp)


async def test_a_rule_set_no_till_could_decode_is_refused_and_pulls_go_on(central, clock):
    till = await enrolled_till(central)
    doc = default_ruleset_doc()
    doc["campaigns"][0]["name"] = "Birthday \ud800"
    import json

    raw = json.dumps({"doc": doc, "actor": "marketing"}).encode()
    resp = await central.put("/api/v1/ruleset", data=raw, headers={
        **central.admin, "Content-Type": "application/json"})
    assert resp.status in (400, 422)
    assert "campaigns[0].name" in await error_of(resp)
    doc = default_ruleset_doc()
    doc["campaigns"][0]["priority"] = 2**64
    resp = await central.put("/api/v1/ruleset", headers=central.admin,
                             json={"doc": doc, "actor": "marketing"})
    assert resp.status in (400, 422) and "campaigns[0].priority" in await error_of(resp)
    resp = await central.get("/sync/v1/ruleset", headers=signed_get(till, "/sync/v1/ruleset",
                                                                     clock))
    assert resp.status == 200
