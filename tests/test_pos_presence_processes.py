"""Presence on real parts: an agent and a central as processes, the card reader over the
simulator's pseudo-terminal, the SMS gateway as its outbox (no gateway runs here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyotp
import pytest

from tillpoint.processes import wait_for
from tillpoint.store_harness import ApiError, StoreHarness

CARD = "2990000000019"
PHONE = "+79001234567"
SOCKS = {"sku": "300", "name": "Socks", "qty": 3000, "price": 15000, "vat": "22"}


@pytest.fixture
async def store(tmp_path: Path):
    async with StoreHarness(tmp_path) as s:
        s.central_args = ["--sms-outbox", str(tmp_path / "sms-outbox")]
        s.outbox = tmp_path / "sms-outbox"
        await s.start_central()
        await s.add_till("till-1")
        yield s


async def spend(store: StoreHarness, cid: str, points: int = 50) -> dict:
    return await store.pos(store.tills[0], "POST", "/pos/v1/receipts",
                           {"customer_id": cid, "lines": [SOCKS], "redeem": points})


async def refused(store: StoreHarness, path: str, body: dict) -> ApiError:
    with pytest.raises(ApiError) as e:
        await store.pos(store.tills[0], "POST", path, body)
    return e.value


async def test_points_are_spent_only_with_the_customer_present(store: StoreHarness):
    till = store.tills[0]
    cid = (await store.office("POST", "/api/v1/customers", {
        "card_number": CARD, "welcome_bonus": 1000, "phone": PHONE}))["id"]

    # A typed number identifies to earn, not to spend.
    who = await store.pos(till, "POST", "/pos/v1/identify", {"card_number": CARD})
    assert who["customer_id"] == cid and who["present"] is None
    e = await refused(store, "/pos/v1/receipts",
                      {"customer_id": cid, "lines": [SOCKS], "redeem": 50})
    assert e.status == 403 and e.body["presence_required"] is True

    # The card at the reader.
    await store.control(till, "POST", "/reader/present", {"barcode": CARD})

    async def identified() -> dict | None:
        try:
            return await store.pos(till, "POST", "/pos/v1/identify", {})
        except ApiError as err:
            if "no card presented" in str(err.body):
                return None
            raise

    who = await wait_for(identified, "the card to reach the agent", timeout=15)
    assert who["present"] == "card"
    assert (await spend(store, cid))["redeemed"] == 50

    # A code by SMS, through the central.
    sent = await store.pos(till, "POST", "/pos/v1/presence/sms", {"customer_id": cid})
    assert sent["sent"] is True
    (message,) = [json.loads(x) for x in store.outbox.read_text().splitlines()]
    assert message["to"] == PHONE
    code = message["text"].split("code is ")[1][:6]
    e = await refused(store, "/pos/v1/presence/code",
                      {"customer_id": cid, "code": f"{(int(code) + 1) % 10**6:06d}"})
    assert e.status == 422
    ok = await store.pos(till, "POST", "/pos/v1/presence/code",
                         {"customer_id": cid, "code": code})
    assert ok["present"] == "sms"
    assert (await spend(store, cid))["redeemed"] == 50

    # The app's code, made by an independent TOTP implementation from the key it is given.
    uri = (await store.office("POST", f"/api/v1/customers/{cid}/app-code"))["otpauth_uri"]
    app = pyotp.parse_uri(uri)
    ok = await store.pos(till, "POST", "/pos/v1/presence/code",
                         {"customer_id": cid, "code": app.now()})
    assert ok["present"] == "app"
    assert (await spend(store, cid))["redeemed"] == 50

    await store.wait_synced()
    held = (await store.office("GET", f"/api/v1/tills/{till.till_id}/journal"))["entries"]
    assert [e["presence"] for e in held] == ["card", "sms", "app"]
    alerts = await store.office("GET", "/api/v1/alerts?kind=presence")
    assert alerts["alerts"] == []  # the central re-checked each proof and found it good

    # Offline: no SMS, but the app's code is checked at the till.
    store.kill_central()
    e = await refused(store, "/pos/v1/presence/sms", {"customer_id": cid})
    assert e.status == 503 and "app's code or the card" in e.body["error"]
    ok = await store.pos(till, "POST", "/pos/v1/presence/code",
                         {"customer_id": cid, "code": app.at(time.time() + 30)})
    assert ok["present"] == "app"
    assert (await spend(store, cid))["redeemed"] == 50
