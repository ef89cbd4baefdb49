"""The central's side of presence: SMS codes it sends (through the gateway interface) and
checks, and the re-check of every journalled proof of a sale that spends points."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from aiohttp import web

from agent import journal
from agent.central_client import CentralError
from agent.presence import SmsDesk
from central import presence as central_presence
from central.app import make_app
from central.clock import utcnow
from central.web_common import DB, SECRETS
from protocol import app_codes
from protocol import presence as proofs
from protocol.journal import JournalEntry, new_receipt_id
from tests.sync_fixtures import LocalTill, enrol, new_path

CARD, OTHER_CARD = "2990000000019", "2990000000026"


@pytest.fixture
async def central(aiohttp_client, tmp_path: Path):
    outbox = tmp_path / "sms-outbox"
    app = make_app(tmp_path / "central", utcnow, reprice_every=None,
                   sms=central_presence.OutboxSmsGateway(outbox))
    client = await aiohttp_client(app)
    client.db = app[DB]
    client.secrets = app[SECRETS]
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    client.outbox = outbox
    return client


@pytest.fixture
async def till(central, tmp_path: Path):
    t = LocalTill(await enrol(central), new_path(tmp_path))
    yield t
    await t.close()


async def customer(central, card: str, phone: str | None = "+79001234567") -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin, json={
        "card_number": card, "name": "Anna", "welcome_bonus": 500,
        **({"phone": phone} if phone else {})})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


def spend(till: LocalTill, customer_id: str, proof: dict | None, at: datetime | None = None,
          points: int = 100) -> JournalEntry:
    at = at or datetime.now(UTC)
    with till.db.atomic():
        return journal.append(till.db, JournalEntry(
            seq=0, epoch="", prev_hash="", kind="sale", receipt_id=new_receipt_id(at),
            at=at.isoformat(timespec="seconds"), store=till.ident.store,
            customer_id=customer_id, ruleset_version=1, total=10000, fiscal_doc=0,
            redeemed=points, presence=proof))


def presence_alerts(central) -> list[dict]:
    return [dict(r) for r in central.db.execute(
        "SELECT * FROM alerts WHERE kind = 'presence' ORDER BY id")]


async def test_a_spending_sale_without_a_proof_that_holds_raises_one_alert(central, till):
    anna = await customer(central, CARD)
    bob = await customer(central, OTHER_CARD, phone="+79007654321")
    ring = central.secrets.card_keys
    # her card; the till knows it under a key the central has retired, or not yet rotated
    spend(till, anna, proofs.card(["ct_" + "0" * 32, ring.token(CARD)[1]]))
    spend(till, anna, None)
    spend(till, anna, proofs.card([ring.token(OTHER_CARD)[1]]))  # Bob's card
    await till.sync.push()
    (alert,) = presence_alerts(central)
    assert alert["severity"] == "critical" and alert["till_id"] == till.ident.till_id
    assert "entry 2" in alert["message"] and "no proof" in alert["message"]
    assert "entry 3" in alert["message"] and "not the customer's" in alert["message"]
    assert "entry 1" not in alert["message"]
    assert bob


async def test_app_codes_are_computed_again_and_taken_once(central, till):
    anna = await customer(central, CARD)
    key = central.secrets.card_keys.newest
    now = datetime.now(UTC)
    step = app_codes.step_at(now)
    code = app_codes.code_at(key, anna, step)
    spend(till, anna, proofs.app(key.version, step, code), at=now)
    await till.sync.push()
    assert presence_alerts(central) == []
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    spend(till, anna, proofs.app(key.version, step, code), at=now)  # the same code again
    spend(till, anna, proofs.app(key.version, step + 1, wrong), at=now)
    stale = step - 100
    spend(till, anna, proofs.app(key.version, stale, app_codes.code_at(key, anna, stale)),
          at=now)
    await till.sync.push()
    (alert,) = presence_alerts(central)
    assert "entry 2 " in alert["message"] and "used for another receipt" in alert["message"]
    assert "entry 3 " in alert["message"] and "not the customer's" in alert["message"]
    assert "entry 4 " in alert["message"] and "not of the sale's time" in alert["message"]


async def test_an_sms_code_is_sent_checked_and_spent_once(central, till):
    anna = await customer(central, CARD)
    desk = SmsDesk(till.client)
    sent = await desk.send(anna)
    (message,) = [json.loads(line) for line in central.outbox.read_text().splitlines()]
    assert message["to"] == "+79001234567"
    code = message["text"].split("code is ")[1][:6]
    kept = dict(central.db.execute("SELECT * FROM presence_challenges").fetchone())
    assert code.isdigit() and code not in kept.values()  # only its hash is kept
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(CentralError) as e:
        await desk.check(sent["challenge"], wrong)
    assert e.value.status == 422 and "4 tries left" in str(e.value)
    await desk.check(sent["challenge"], code)
    with pytest.raises(CentralError) as e:  # verified: not again
        await desk.check(sent["challenge"], code)
    assert e.value.status == 410
    spend(till, anna, proofs.sms(sent["challenge"]))
    spend(till, anna, proofs.sms(sent["challenge"]))  # the same challenge twice
    await till.sync.push()
    (alert,) = presence_alerts(central)
    assert "entry 2 " in alert["message"] and "entry 1 " not in alert["message"]


async def test_sms_codes_have_attempt_limits_a_lifetime_and_a_send_limit(central, till):
    anna = await customer(central, CARD)
    desk = SmsDesk(till.client)
    sent = await desk.send(anna)
    for left in (4, 3, 2, 1):
        with pytest.raises(CentralError) as e:
            await desk.check(sent["challenge"], "000000")
        assert e.value.status == 422 and f"{left} tries left" in str(e.value)
    with pytest.raises(CentralError) as e:
        await desk.check(sent["challenge"], "000000")
    assert e.value.status == 410 and "void" in str(e.value)
    code = central.outbox.read_text().splitlines()[-1]
    code = json.loads(code)["text"].split("code is ")[1][:6]
    with pytest.raises(CentralError) as e:  # even the right one, once void
        await desk.check(sent["challenge"], code)
    assert e.value.status == 410
    second = await desk.send(anna)
    central.db.execute("UPDATE presence_challenges SET expires_at = ? WHERE id = ?",
                       ((datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
                        second["challenge"]))
    code = json.loads(central.outbox.read_text().splitlines()[-1])["text"]
    with pytest.raises(CentralError) as e:
        await desk.check(second["challenge"], code.split("code is ")[1][:6])
    assert e.value.status == 410 and "expired" in str(e.value)
    await desk.send(anna)
    with pytest.raises(CentralError) as e:  # a till cannot flood the customer's phone
        await desk.send(anna)
    assert e.value.status == 429
    assert len(central.outbox.read_text().splitlines()) == 3


async def test_sms_refusals_name_why(central, till, tmp_path: Path):
    no_phone = await customer(central, CARD, phone=None)
    desk = SmsDesk(till.client)
    with pytest.raises(CentralError) as e:
        await desk.send(no_phone)
    assert e.value.status == 409 and "no phone" in str(e.value)
    with pytest.raises(CentralError) as e:
        await desk.send("nobody")
    assert e.value.status == 404
    with pytest.raises(CentralError) as e:
        await desk.check("0" * 32, "123456")
    assert e.value.status == 404
    resp = await central.post("/sync/v1/presence/sms", json={"customer_id": no_phone})
    assert resp.status == 401  # unsigned: not a till


async def test_an_apps_key_is_given_to_head_office_for_the_app(central):
    anna = await customer(central, CARD)
    resp = await central.post(f"/api/v1/customers/{anna}/app-code", headers=central.admin)
    assert resp.status == 201
    totp = pyotp.parse_uri((await resp.json())["otpauth_uri"])
    ring = central.secrets.card_keys
    assert app_codes.verify(ring, anna, totp.now(), datetime.now(UTC)) is not None
    resp = await central.post("/api/v1/customers/nobody/app-code", headers=central.admin)
    assert resp.status == 404
    resp = await central.post(f"/api/v1/customers/{anna}/app-code")
    assert resp.status == 401


async def test_the_http_gateway_posts_each_message_and_a_failure_voids_the_code(
        aiohttp_server, aiohttp_client, tmp_path: Path):
    """The real gateway client, against an HTTP server standing in for the provider."""
    got: list[tuple[str | None, dict]] = []
    answer = {"status": 200}

    async def provider(request: web.Request) -> web.Response:
        got.append((request.headers.get("Authorization"), await request.json()))
        return web.json_response({}, status=answer["status"])

    gateway_app = web.Application()
    gateway_app.router.add_post("/send", provider)
    gateway = await aiohttp_server(gateway_app)
    app = make_app(tmp_path / "central", utcnow, reprice_every=None,
                   sms=central_presence.HttpSmsGateway(str(gateway.make_url("/send")), "t0k"))
    central = await aiohttp_client(app)
    central.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    till = LocalTill(await enrol(central), new_path(tmp_path))
    try:
        anna = await customer(central, CARD)
        desk = SmsDesk(till.client)
        await desk.send(anna)
        ((auth, message),) = got
        assert auth == "Bearer t0k" and message["to"] == "+79001234567"
        assert "code is" in message["text"]
        answer["status"] = 500
        with pytest.raises(CentralError) as e:
            await desk.send(anna)
        assert e.value.status == 502 and "500" in str(e.value)
        statuses = [r[0] for r in app[DB].execute("SELECT status FROM presence_challenges")]
        assert statuses == ["void", "void"]  # the second never reached the phone
    finally:
        await till.close()
