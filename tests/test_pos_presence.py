"""Spending points needs the customer present at this checkout: the card at the reader, or
a one-time code (the app's, checked offline; or an SMS through the central). A typed card
number or a bare customer_id earns but does not spend."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from agent import journal
from agent.devices.reader import CardPresented
from agent.presence import PRESENCE_TTL_S, WRONG_PER_CUSTOMER, CheckoutPresence
from protocol import app_codes
from tests.pos_rig import Rig, RigCardKeys

SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000, "vat": "22"}
CARD = "2990000000019"


class Ticks:
    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def rig(aiohttp_client: Callable, tmp_path: Path):
    r = Rig(tmp_path)
    r.ticks = Ticks()
    r.checkout.presence = CheckoutPresence(clock=r.ticks)
    r.client = await aiohttp_client(r.app())
    r.cid = r.add_customer("c-1", CARD, available=1000)
    yield r
    r.db.close()


async def post(rig: Rig, path: str, body: dict):
    resp = await rig.client.post(path, json=body, headers=rig.auth)
    return resp.status, await resp.json()


async def sell(rig: Rig, redeem: int, customer_id: str | None = None, **extra):
    return await post(rig, "/pos/v1/receipts", {"customer_id": customer_id or rig.cid,
                                                 "lines": [SOCKS], "redeem": redeem, **extra})


async def at_reader(rig: Rig, number: str = CARD):
    token = RigCardKeys().tokens(number)[0][1]
    rig.last_card.presented(CardPresented((token,), "loyalty", number[-4:], time.monotonic()))
    return await post(rig, "/pos/v1/identify", {})


def app(rig: Rig, customer_id: str | None = None) -> pyotp.TOTP:
    """The customer's app, as an independent TOTP implementation sees the key it is given."""
    key = rig.app_keys().newest
    return pyotp.parse_uri(app_codes.otpauth_uri(key, customer_id or rig.cid))


def entries(rig: Rig):
    return journal.entries_from(rig.db, 1, 100)


async def test_a_bare_customer_id_or_a_typed_card_earns_but_does_not_spend(rig: Rig):
    status, body = await sell(rig, 100)
    assert status == 403 and body["presence_required"] is True
    assert "customer present" in body["error"] and "card at the reader" in body["error"]
    status, who = await post(rig, "/pos/v1/identify", {"card_number": CARD})
    assert status == 200 and who["present"] is None
    status, body = await sell(rig, 100)
    assert status == 403
    assert rig.printer.documents == [] and entries(rig) == []
    status, done = await sell(rig, 0)
    assert status == 201 and done["earned"] > 0 and done["redeemed"] == 0


async def test_the_card_at_the_reader_lets_the_receipt_that_follows_spend(rig: Rig):
    status, who = await at_reader(rig)
    assert status == 200 and who["present"] == "card"
    status, done = await sell(rig, 100)
    assert status == 201 and done["redeemed"] == 100
    (entry,) = entries(rig)
    assert entry.presence == {"method": "card", "tokens": [RigCardKeys().tokens(CARD)[0][1]]}
    assert journal.verify(rig.db).ok
    # taken by that receipt: the next one needs the customer present again
    assert (await sell(rig, 100))[0] == 403


async def test_a_sale_that_spends_nothing_carries_the_card_read_and_a_typed_one_nothing(
        rig: Rig):
    # The central counts a member's sale without a proof as a typed card number
    # (central.fraud_watch, the cashier rule): the proof rides on every sale that has one.
    await at_reader(rig)
    assert (await sell(rig, 0))[0] == 201
    await post(rig, "/pos/v1/identify", {"card_number": CARD})
    assert (await sell(rig, 0))[0] == 201
    read, typed = entries(rig)
    assert read.presence is not None and read.presence["method"] == "card"
    assert typed.presence is None


async def test_presence_ties_to_the_next_receipt_its_customer_and_its_lifetime(rig: Rig):
    other = rig.add_customer("c-2", "2990000000026", available=1000)
    await at_reader(rig)
    assert (await sell(rig, 100, other))[0] == 403  # c-1 is present, not c-2
    assert (await sell(rig, 0))[0] == 201  # the receipt that follows takes it
    assert (await sell(rig, 100))[0] == 403
    await at_reader(rig)
    await post(rig, "/pos/v1/identify", {"card_number": CARD})  # another identification
    assert (await sell(rig, 100))[0] == 403
    await at_reader(rig)
    rig.ticks.t += PRESENCE_TTL_S + 1
    assert (await sell(rig, 100))[0] == 403


async def test_a_refused_redemption_keeps_the_presence(rig: Rig):
    await at_reader(rig)
    status, _ = await sell(rig, 100_000)  # more than the receipt allows: nothing printed
    assert status == 409
    assert (await sell(rig, 100))[0] == 201


async def test_the_apps_code_makes_the_customer_present_once(rig: Rig):
    code = app(rig).now()
    status, body = await post(rig, "/pos/v1/presence/code", {"customer_id": rig.cid,
                                                             "code": code})
    assert status == 200 and body["present"] == "app"
    assert body["expires_in"] == PRESENCE_TTL_S
    status, done = await sell(rig, 100)
    assert status == 201 and done["redeemed"] == 100
    proof = entries(rig)[0].presence
    assert proof["method"] == "app" and proof["code"] == code
    assert app_codes.matches(rig.app_keys(), rig.cid, code, proof["key_version"], proof["step"])
    # a code is taken once
    status, body = await post(rig, "/pos/v1/presence/code", {"customer_id": rig.cid,
                                                             "code": code})
    assert status == 422 and "used" in body["error"]
    # another customer's code is not this one's
    rig.add_customer("c-2", "2990000000026")
    status, _ = await post(rig, "/pos/v1/presence/code",
                           {"customer_id": rig.cid, "code": app(rig, "c-2").now()})
    assert status == 422


async def test_wrong_codes_are_limited_per_customer_and_per_till(rig: Rig):
    right = app(rig).now()
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for _ in range(WRONG_PER_CUSTOMER):
        status, body = await post(rig, "/pos/v1/presence/code",
                                  {"customer_id": rig.cid, "code": wrong})
        assert status == 422
    resp = await rig.client.post("/pos/v1/presence/code", headers=rig.auth,
                                 json={"customer_id": rig.cid, "code": right})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert "for this customer" in (await resp.json())["error"]
    assert (await sell(rig, 100))[0] == 403
    # the window lets them go
    rig.ticks.t += 601
    status, _ = await post(rig, "/pos/v1/presence/code", {"customer_id": rig.cid,
                                                          "code": app(rig).now()})
    assert status == 200
    # twenty wrong codes across customers hold the whole till
    for i in range(20):
        cid = rig.add_customer(f"g-{i}", f"29900000{i:04d}")
        await post(rig, "/pos/v1/presence/code", {"customer_id": cid, "code": "000000"})
    status, body = await post(rig, "/pos/v1/presence/code",
                              {"customer_id": rig.cid, "code": app(rig).now()})
    assert status == 429 and "at this till" in body["error"]


@pytest.mark.parametrize(("body", "status", "what"), [
    ({"customer_id": "c-1", "code": "12345"}, 400, "code"),
    ({"customer_id": "c-1", "code": "12345a"}, 400, "code"),
    ({"customer_id": "c-1", "code": "１２３４５６"}, 400, "code"),
    ({"customer_id": "c-1", "code": 123456}, 400, "code"),
    ({"code": "123456"}, 400, "customer_id"),
    ({"customer_id": "nobody", "code": "123456"}, 404, "not known"),
])
async def test_bad_code_requests_get_4xx_naming_why(rig: Rig, body, status, what):
    got, answer = await post(rig, "/pos/v1/presence/code", body)
    assert got == status and what in answer["error"]


async def test_sms_needs_the_central(rig: Rig):
    status, body = await post(rig, "/pos/v1/presence/sms", {"customer_id": rig.cid})
    assert status == 503 and "app's code or the card" in body["error"]


async def test_a_retried_receipt_that_spent_is_answered_again(rig: Rig):
    await at_reader(rig)
    first = await sell(rig, 100, idempotency_key="k-1")
    assert first[0] == 201
    assert await sell(rig, 100, idempotency_key="k-1") == first  # no presence asked again
    assert len(rig.printer.documents) == 1
