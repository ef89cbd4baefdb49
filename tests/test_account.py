"""The customer's own account (issue 10): sign-in with a one-time code, then balance,
history with goods, personal offers, contacts and consents, export and erasure, each only of
the signed-in customer; every bad input answered 400 naming the field; limits 429 with
Retry-After. On both databases (the `central` fixture)."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import pytest

from central import account_sign_in, api_account, ledger, repricing
from central.app import make_app
from central.auth_failures import Throttle
from central.client_source import TrustedProxies
from central.message_channels import Channels, LogChannel, NotSent, Outgoing
from central.web_common import DB, SECRETS
from protocol import rules
from tests.test_central_sync_api import enrolled_till, send
from tests.test_till_takeover import pull, sale, sent_view

ANNA = {"card_number": "2990000000012", "name": "Anna Petrova", "phone": "+79990000001",
        "welcome_bonus": 100}
BOB = {"card_number": "2990000000029", "name": "Bob", "phone": "+79990000002"}


PERFUME = {"id": "perfume-x3", "name": "Perfume: triple points", "priority": 55,
           "when": {"offers": ["perfume-x3"]}, "lines": {"categories": ["beauty/perfume"]},
           "effect": {"type": "multiplier", "factor": 3, "of": "base"}}
# offers this customer is not shown: another segment's, and one that has ended
GOLFERS = {**PERFUME, "id": "golf-x2", "name": "Golfers: double points",
           "when": {"offers": ["golf-x2"], "segments": ["golfers"]}}
ENDED = {**PERFUME, "id": "summer", "name": "Summer",
         "when": {"offers": ["summer"], "to": "2026-09-01T00:00:00+03:00"}}


async def publish_offers(central) -> None:
    doc = rules.default_ruleset_doc()
    doc["campaigns"] += [PERFUME, GOLFERS, ENDED]
    resp = await central.put("/api/v1/ruleset", headers=central.admin, json={"doc": doc})
    assert resp.status == 201, await resp.text()


async def customer(central, **fields) -> str:
    resp = await central.post("/api/v1/customers", headers=central.admin, json=fields)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


def outbox(central, channel: str = "sms") -> LogChannel:
    sender = central.app[api_account.CHANNELS].get(channel)
    assert isinstance(sender, LogChannel)
    return sender


def last_code(central, to: str, channel: str = "sms") -> str:
    """The code the development sender wrote for `to`, read as the customer would."""
    message = next(m for m in reversed(outbox(central, channel).sent) if m.to == to)
    return message.body[:6]


async def ask_code(central, **contact):
    return await central.post("/account/v1/sign-in/code", json=contact)


async def sign_in(central, phone: str) -> dict[str, str]:
    """A bearer session of the customer with this phone; its headers."""
    resp = await ask_code(central, phone=phone)
    assert resp.status == 202, await resp.text()
    challenge = (await resp.json())["challenge"]
    resp = await central.post("/account/v1/sign-in", json={
        "challenge": challenge, "code": last_code(central, phone), "session": "bearer"})
    assert resp.status == 200, await resp.text()
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}


async def get(central, path: str, headers: dict[str, str]) -> dict:
    resp = await central.get(f"/account/v1{path}", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def audit_rows(central, action: str) -> list[dict]:
    return [dict(r) for r in central.db.execute(
        "SELECT actor, subject, after FROM audit WHERE action = ? ORDER BY seq", (action,))]


# -- signing in ---------------------------------------------------------------------------


async def test_a_code_signs_in_once_and_the_session_is_a_cookie_or_a_bearer(central, clock):
    cid = await customer(central, **ANNA)
    resp = await ask_code(central, phone="8 (999) 000-00-01")  # as people type it
    assert resp.status == 202
    answer = await resp.json()
    assert answer["channel"] == "sms" and answer["resend_after"] == 60
    code = last_code(central, "+79990000001")
    resp = await central.post("/account/v1/sign-in",
                              json={"challenge": answer["challenge"], "code": code})
    assert resp.status == 200
    assert (await resp.json()) == {"customer_id": cid, "expires_at": "2026-11-23T10:30:00+00:00"}
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/account" in cookie
    assert (await get(central, "/me", {}))["id"] == cid  # the client's jar sends the cookie
    # used up: the same code again is refused
    resp = await central.post("/account/v1/sign-in",
                              json={"challenge": answer["challenge"], "code": code})
    assert resp.status == 410
    # neither the code nor the session token is stored as it is
    rows = [json.dumps([*r]) for t in ("account_codes", "account_sessions")
            for r in central.db.execute(f"SELECT * FROM {t}")]
    assert not any(code in r or "+7999" in r for r in rows)
    token = resp.cookies.get(api_account.COOKIE)
    assert token is None or not any(token.value in r for r in rows)
    assert [r["actor"] for r in audit_rows(central, "account.sign-in")] == [f"customer:{cid}"]


@pytest.mark.parametrize(("proxies", "secure"), [((), False), (("127.0.0.1",), True)])
async def test_the_cookie_is_secure_when_a_trusted_proxy_says_tls(aiohttp_client, tmp_path,
                                                                  clock, proxies, secure):
    app = make_app(tmp_path / "central", clock, reprice_every=None,
                   trusted_proxies=TrustedProxies.parse(proxies))
    central = await aiohttp_client(app)
    central.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    await customer(central, **ANNA)
    challenge = (await (await ask_code(central, phone=ANNA["phone"])).json())["challenge"]
    resp = await central.post("/account/v1/sign-in", headers={"X-Forwarded-Proto": "https"},
                              json={"challenge": challenge,
                                    "code": last_code(central, ANNA["phone"])})
    assert resp.status == 200
    assert ("; Secure" in resp.headers["Set-Cookie"]) is secure


class DownChannel:
    async def send(self, message: Outgoing) -> str:
        raise NotSent("the gateway cannot be reached")


@pytest.mark.parametrize("sms", [None, DownChannel()])
async def test_a_code_that_cannot_be_sent_is_503_and_void(aiohttp_client, tmp_path, clock,
                                                          sms):
    app = make_app(tmp_path / "central", clock, reprice_every=None,
                   channels=Channels(sms=sms, email=LogChannel("email")))
    central = await aiohttp_client(app)
    central.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    await customer(central, **ANNA)
    resp = await ask_code(central, phone=ANNA["phone"])
    assert resp.status == 503
    statuses = [r["status"] for r in app[DB].execute("SELECT status FROM account_codes")]
    assert statuses == ["void"]


async def test_a_session_lasts_thirty_minutes_and_ends_at_sign_out(central, clock):
    await customer(central, **ANNA)
    headers = await sign_in(central, ANNA["phone"])
    clock.advance(minutes=29)
    await get(central, "/me", headers)
    clock.advance(minutes=1)
    resp = await central.get("/account/v1/me", headers=headers)
    assert resp.status == 401 and "sign in" in (await resp.json())["error"]
    clock.advance(minutes=1)  # the next code may go
    headers = await sign_in(central, ANNA["phone"])
    assert (await central.post("/account/v1/sign-out", headers=headers)).status == 204
    assert (await central.get("/account/v1/balance", headers=headers)).status == 401
    for wrong in ({}, {"Authorization": "Bearer acs_nothing"},
                  {"Authorization": f"Bearer {central.secrets.admin_token}"}):
        assert (await central.get("/account/v1/me", headers=wrong)).status == 401
    # and an account session opens nothing of the staff API
    assert (await central.get("/api/v1/alerts", headers=headers)).status == 401


async def test_wrong_codes_run_out_and_codes_expire(central, clock):
    await customer(central, **ANNA)
    challenge = (await (await ask_code(central, phone=ANNA["phone"])).json())["challenge"]
    right = last_code(central, ANNA["phone"])
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                               "code": wrong})
        assert resp.status == 422
        assert (await resp.json())["error"] == f"field 'code' is wrong: {left} tries left"
    resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                           "code": wrong})
    assert resp.status == 410 and "void" in (await resp.json())["error"]
    # void means void, even for the right code
    resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                           "code": right})
    assert resp.status == 410
    clock.advance(minutes=1)
    challenge = (await (await ask_code(central, phone=ANNA["phone"])).json())["challenge"]
    right = last_code(central, ANNA["phone"])
    clock.advance(minutes=5)
    resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                           "code": right})
    assert resp.status == 410 and "expired" in (await resp.json())["error"]


async def test_resending_is_throttled_per_contact_with_retry_after(central, clock):
    await customer(central, **ANNA)
    assert (await ask_code(central, phone=ANNA["phone"])).status == 202
    clock.advance(seconds=20)
    resp = await ask_code(central, phone=ANNA["phone"])
    assert resp.status == 429 and resp.headers["Retry-After"] == "40"
    clock.advance(seconds=40)
    first = (await (await ask_code(central, phone=ANNA["phone"])).json())["challenge"]
    first_code = last_code(central, ANNA["phone"])
    clock.advance(minutes=1)
    assert (await ask_code(central, phone=ANNA["phone"])).status == 202
    clock.advance(minutes=1)
    resp = await ask_code(central, phone=ANNA["phone"])  # a fourth in ten minutes
    assert resp.status == 429
    assert resp.headers["Retry-After"] == str(10 * 60 - 3 * 60)
    assert "3 codes" in (await resp.json())["error"]
    assert len(outbox(central).sent) == 3
    # a newer code voids the one before
    resp = await central.post("/account/v1/sign-in", json={"challenge": first,
                                                           "code": first_code})
    assert resp.status == 410


async def test_an_unknown_contact_gets_the_same_answer_and_no_message(central, clock):
    await customer(central, **ANNA)
    known = await ask_code(central, phone=ANNA["phone"])
    unknown = await ask_code(central, phone="+79990009999")
    assert known.status == unknown.status == 202
    assert set(await known.json()) == set(await unknown.json())
    assert [m.to for m in outbox(central).sent] == [ANNA["phone"]]
    challenge = (await unknown.json())["challenge"]
    for code in ("000000", "123456"):
        resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                               "code": code})
        assert resp.status == 422


async def test_signing_in_by_email(central, clock):
    cid = await customer(central, **ANNA)
    resp = await central.put(f"/api/v1/message-contacts/{cid}", headers=central.admin,
                             json={"email": "Anna@Example.org", "source": "form"})
    assert resp.status == 200, await resp.text()
    resp = await ask_code(central, email="anna@example.ORG")
    assert (await resp.json())["channel"] == "email"
    code = last_code(central, "anna@example.org", "email")
    resp = await central.post("/account/v1/sign-in", json={
        "challenge": (await resp.json())["challenge"], "code": code})
    assert resp.status == 200 and (await resp.json())["customer_id"] == cid


async def test_per_source_limits_answer_429_with_retry_after(central, clock):
    await customer(central, **ANNA)
    for i in range(10):
        assert (await ask_code(central, phone=f"+7999111{i:04d}")).status == 202
    resp = await ask_code(central, phone="+79991119999")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    challenge = "ach_none"
    for _ in range(20):
        resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                               "code": "123456"})
        assert resp.status == 404 and "challenge" in (await resp.json())["error"]
    resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                           "code": "123456"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0


async def test_every_account_route_is_under_the_per_source_request_limit(central, clock):
    await customer(central, **ANNA)
    headers = await sign_in(central, ANNA["phone"])
    central.app[api_account.LIMITS].requests = Throttle(limit=3, window=60.0)
    for _ in range(3):
        assert (await central.get("/account/v1/balance", headers=headers)).status == 200
    for method, path in (("GET", "/balance"), ("GET", "/me"), ("POST", "/sign-in/code")):
        resp = await central.request(method, f"/account/v1{path}", headers=headers, json={})
        assert resp.status == 429, path
        assert 0 < int(resp.headers["Retry-After"]) <= 60
        assert "too many requests" in (await resp.json())["error"]


# -- the account --------------------------------------------------------------------------


async def test_balance_in_detail_and_history_with_goods(central, clock):
    till = await enrolled_till(central)
    cid = await customer(central, **ANNA)
    now = clock()
    with central.db.transaction():  # a lot of last year's that expires within 30 days
        ledger.earn(central.db, cid, 40, now - timedelta(days=300), now + timedelta(days=10),
                    now, ledger.Source(actor="test", reason="old lot"))
    s = sale(till, central, sent_view(await pull(central, till, clock), cid))
    assert s.earned > 0
    assert (await send(central, till.batch())).status == 200
    repricing.reprice_pending(central.db, clock())
    headers = await sign_in(central, ANNA["phone"])

    b = await get(central, "/balance", headers)
    assert (b["available"], b["pending"], b["debt"]) == (140, s.earned, 0)
    assert b["pending_lots"] == [{"points": s.earned,
                                  # the return window's end, at the start of the programme's day
                                  "activates_at": "2026-12-08T00:00:00+00:00"}]
    assert b["expiring_within_30_days"] == 40
    assert b["expiring_lots"] == [{"points": 40, "expires_at": "2026-12-03T10:00:00+00:00"}]

    h = await get(central, "/history", headers)
    [receipt] = h["receipts"]
    assert receipt["receipt_id"] == till.entries[0].receipt_id
    assert receipt["earned"] == s.earned
    assert receipt["goods"] == [{"sku": "300", "name": "Socks", "qty": 3000, "price": 15000,
                                 "amount": 45000}]
    assert {m["kind"] for m in h["movements"]} >= {"bonus", "earn"}
    assert all("actor" not in m for m in h["movements"])  # staff names stay with staff


async def test_debt_shows_as_such(central, clock):
    cid = await customer(central, **BOB)
    with central.db.transaction():
        ledger.redeem(central.db, cid, 30, clock(), ledger.Source(till_id="t", seq=1))
    b = await get(central, "/balance", await sign_in(central, BOB["phone"]))
    assert (b["available"], b["pending"], b["debt"]) == (-30, 0, 30)


async def test_activating_a_personal_offer_goes_through_the_domain_and_the_audit(central,
                                                                                 clock):
    await publish_offers(central)
    cid = await customer(central, **ANNA)
    headers = await sign_in(central, ANNA["phone"])
    offers = await get(central, "/offers", headers)
    assert offers == {"offers": [{"offer": "perfume-x3", "campaigns": ["Perfume: triple points"],
                                  "until": None, "activated": False}], "earned": []}
    resp = await central.post("/account/v1/offers", headers=headers,
                              json={"offer": "perfume-x3"})
    assert resp.status == 200
    assert [o["activated"] for o in (await resp.json())["offers"]
            if o["offer"] == "perfume-x3"] == [True]
    staff_view = await (await central.get(f"/api/v1/customers/{cid}",
                                          headers=central.admin)).json()
    assert staff_view["offers"] == ["perfume-x3"]
    [record] = audit_rows(central, "customer.offer.activate")
    assert record["actor"] == record["subject"] == f"customer:{cid}"
    assert json.loads(record["after"]) == {"offer": "perfume-x3"}
    for other in ("free-car", "golf-x2", "summer"):
        resp = await central.post("/account/v1/offers", headers=headers, json={"offer": other})
        assert resp.status == 404 and "'offer'" in (await resp.json())["error"]
    resp = await central.post(f"/api/v1/customers/{cid}/block", headers=central.admin,
                              json={"reason": "card fraud review"})
    assert resp.status == 200, await resp.text()
    resp = await central.post("/account/v1/offers", headers=headers,
                              json={"offer": "perfume-x3"})
    assert resp.status == 403 and "card fraud review" in (await resp.json())["error"]
    assert (await get(central, "/me", headers))["blocked"]["reason"] == "card fraud review"


async def test_contacts_and_consents_come_from_the_account(central, clock):
    cid = await customer(central, **ANNA)
    headers = await sign_in(central, ANNA["phone"])
    resp = await central.patch("/account/v1/contacts", headers=headers,
                               json={"language": "ru", "service_opt_out": True})
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert (me["email"], me["language"], me["service_opt_out"]) == (None, "ru", True)
    # a new e-mail address is saved once the code sent to it comes back
    resp = await central.post("/account/v1/contacts/email", headers=headers,
                              json={"email": "Anna@Example.org"})
    assert resp.status == 202, await resp.text()
    challenge = (await resp.json())["challenge"]
    assert (await get(central, "/me", headers))["email"] is None
    code = last_code(central, "anna@example.org", "email")
    for body, status, named in (
            ({"challenge": challenge, "code": code, "email": "eve@example.org"}, 400, "'email'"),
            ({"challenge": "ach_other", "code": code, "email": "anna@example.org"}, 404,
             "'challenge'"),
            ({"challenge": challenge, "code": code}, 400, "'email'")):
        resp = await central.post("/account/v1/contacts/email/confirm", headers=headers,
                                  json=body)
        assert resp.status == status and named in (await resp.json())["error"]
    # the code proves the address; it signs nobody in
    resp = await central.post("/account/v1/sign-in", json={"challenge": challenge,
                                                           "code": code})
    assert resp.status == 404
    resp = await central.post("/account/v1/contacts/email/confirm", headers=headers,
                              json={"challenge": challenge, "code": code,
                                    "email": "anna@example.org"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["email"] == "anna@example.org"
    row = central.db.execute("SELECT source, actor FROM message_contacts WHERE customer_id = ?",
                             (cid,)).fetchone()
    assert (row["source"], row["actor"]) == ("account", f"customer:{cid}")
    resp = await central.post("/account/v1/consents", headers=headers,
                              json={"kind": "advertising", "granted": True})
    assert resp.status == 201
    assert (await resp.json())["advertising"] == {
        "granted": True, "at": "2026-11-23T10:00:00+00:00", "source": "account",
        "actor": f"customer:{cid}"}
    assert [r["actor"] for r in audit_rows(central, "customer.consent")] == [f"customer:{cid}"]
    assert [r["actor"] for r in audit_rows(central, "message-contacts.set")] == [
        f"customer:{cid}"] * 2
    assert (await get(central, "/me", headers))["consents"]["advertising"]["granted"] is True


async def test_export_and_erasure_of_ones_own_data(central, clock):
    cid = await customer(central, **ANNA)
    headers = await sign_in(central, ANNA["phone"])
    resp = await central.get("/account/v1/personal-data", headers=headers)
    assert resp.status == 200
    assert "attachment" in resp.headers["Content-Disposition"]
    exported = await resp.json()
    assert exported["customer"]["id"] == cid and exported["customer"]["name"] == "Anna Petrova"
    resp = await central.post("/account/v1/erase", headers=headers, json={"confirm": "erase"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["erased_at"] == "2026-11-23T10:00:00+00:00"
    assert (await central.get("/account/v1/me", headers=headers)).status == 401
    staff_view = await (await central.get(f"/api/v1/customers/{cid}",
                                          headers=central.admin)).json()
    assert staff_view["phone"] is None and staff_view["balance"]["available"] == 100
    assert [r["actor"] for r in audit_rows(central, "customer.erase")] == [f"customer:{cid}"]
    assert [r["actor"] for r in audit_rows(central, "customer.export")] == [f"customer:{cid}"]
    # the erased phone signs in to nothing
    clock.advance(minutes=1)
    await ask_code(central, phone=ANNA["phone"])
    assert [m.to for m in outbox(central).sent] == [ANNA["phone"]]


async def test_one_customer_never_reaches_anothers_data(central, clock):
    till = await enrolled_till(central)
    anna = await customer(central, **ANNA)
    bob = await customer(central, **BOB)
    sale(till, central, sent_view(await pull(central, till, clock), bob))
    assert (await send(central, till.batch())).status == 200
    await publish_offers(central)  # after the sale, which the till priced by version 1
    as_anna = await sign_in(central, ANNA["phone"])
    as_bob = await sign_in(central, BOB["phone"])
    assert (await get(central, "/me", as_anna))["id"] == anna
    assert (await get(central, "/me", as_bob))["id"] == bob
    assert (await get(central, "/history", as_anna))["receipts"] == []
    assert len((await get(central, "/history", as_bob))["receipts"]) == 1
    assert (await get(central, "/balance", as_anna))["available"] == 100
    assert (await get(central, "/balance", as_bob))["available"] == 0
    # no route takes a customer's id: a query parameter is ignored, a body field refused
    assert (await get(central, f"/me?customer_id={bob}", as_anna))["id"] == anna
    resp = await central.post("/account/v1/offers", headers=as_anna,
                              json={"offer": "perfume-x3", "customer_id": bob})
    assert resp.status == 400 and "'customer_id'" in (await resp.json())["error"]
    resp = await central.post("/account/v1/offers", headers=as_anna,
                              json={"offer": "perfume-x3"})
    assert resp.status == 200
    assert (await get(central, "/me", as_bob))["id"] == bob
    bob_offers = await get(central, "/offers", as_bob)
    assert not any(o["activated"] for o in bob_offers["offers"])
    exported = await (await central.get("/account/v1/personal-data", headers=as_bob)).json()
    assert exported["customer"]["id"] == bob and "Anna" not in json.dumps(exported)
    await central.post("/account/v1/erase", headers=as_bob, json={"confirm": "erase"})
    assert (await get(central, "/me", as_anna))["name"] == "Anna Petrova"


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/sign-in/code", {}, "'phone' and 'email'"),
    ("/sign-in/code", {"phone": "+7999", "email": "a@b.c"}, "'phone' and 'email'"),
    ("/sign-in/code", {"phone": "call me"}, "'phone'"),
    ("/sign-in/code", {"phone": 79990000001}, "'phone'"),
    ("/sign-in/code", {"email": "not an address"}, "'email'"),
    ("/sign-in/code", {"email": "a@b"}, "'email'"),
    ("/sign-in/code", {"email": ""}, "'email'"),
    ("/sign-in/code", {"phone": "+79990000001", "name": "x"}, "'name'"),
    ("/sign-in", {"code": "123456"}, "'challenge'"),
    ("/sign-in", {"challenge": "ach_x"}, "'code'"),
    ("/sign-in", {"challenge": 5, "code": "123456"}, "'challenge'"),
    ("/sign-in", {"challenge": "ach_x", "code": "12a456"}, "'code'"),
    ("/sign-in", {"challenge": "ach_x", "code": "1234567"}, "'code'"),
    ("/sign-in", {"challenge": "ach_x", "code": "123456", "session": "jwt"}, "'session'"),
])
async def test_bad_sign_in_input_is_400_naming_the_field(central, path, body, named):
    resp = await central.post(f"/account/v1{path}", json=body)
    assert resp.status == 400, await resp.text()
    assert named in (await resp.json())["error"]


@pytest.mark.parametrize(("method", "path", "body", "named"), [
    ("POST", "/offers", {}, "'offer'"),
    ("POST", "/offers", {"offer": 3}, "'offer'"),
    ("POST", "/offers", {"offer": "x" * 5000}, "offer"),
    ("PATCH", "/contacts", {}, "email"),
    ("PATCH", "/contacts", {"email": "nope"}, "'email'"),
    ("PATCH", "/contacts", {"email": "new@example.org"}, "'email'"),
    ("POST", "/contacts/email", {}, "'email'"),
    ("POST", "/contacts/email", {"email": "nope"}, "'email'"),
    ("POST", "/contacts/email", {"email": "a@b.c", "phone": "+79990000003"}, "'phone'"),
    ("POST", "/contacts/email/confirm", {"code": "123456", "email": "a@b.c"}, "'challenge'"),
    ("POST", "/contacts/email/confirm", {"challenge": "ach_x", "email": "a@b.c"}, "'code'"),
    ("PATCH", "/contacts", {"language": "fr"}, "'language'"),
    ("PATCH", "/contacts", {"service_opt_out": "yes"}, "'service_opt_out'"),
    ("PATCH", "/contacts", {"phone": "+7999"}, "'phone'"),
    ("PATCH", "/contacts", {"push_token": "t"}, "'push_token'"),
    ("POST", "/consents", {"kind": "marketing", "granted": True}, "'kind'"),
    ("POST", "/consents", {"kind": "processing", "granted": "yes"}, "'granted'"),
    ("POST", "/consents", {"kind": "processing", "granted": True, "source": "x"}, "'source'"),
    ("POST", "/erase", {}, "'confirm'"),
    ("POST", "/erase", {"confirm": "yes"}, "'confirm'"),
])
async def test_bad_account_input_is_400_naming_the_field(central, clock, method, path, body,
                                                         named):
    await customer(central, **ANNA)
    headers = await sign_in(central, ANNA["phone"])
    resp = await central.request(method, f"/account/v1{path}", headers=headers, json=body)
    assert resp.status == 400, await resp.text()
    assert named in (await resp.json())["error"]


async def test_bad_json_and_bad_query_are_400(central, clock):
    await customer(central, **ANNA)
    for path in ("/sign-in/code", "/sign-in"):
        for raw in (b"{", b"[1]", b"\xff"):
            resp = await central.post(f"/account/v1{path}", data=raw,
                                      headers={"Content-Type": "application/json"})
            assert resp.status == 400
    headers = await sign_in(central, ANNA["phone"])
    resp = await central.post("/account/v1/offers", data=b'{"offer":', headers=headers)
    assert resp.status == 400
    for limit in ("0", "101", "ten", "-1"):
        resp = await central.get(f"/account/v1/history?limit={limit}", headers=headers)
        assert resp.status == 400 and "'limit'" in (await resp.json())["error"]


# -- the page -----------------------------------------------------------------------------


async def test_the_page_and_its_assets_are_served_from_the_package(central):
    resp = await central.get("/account")
    assert resp.status == 200 and resp.content_type == "text/html"
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "require-trusted-types-for 'script'" in policy
    page = await resp.text()
    assert "/account/assets/account.js" in page and "http" not in page.replace(
        "http-equiv", "")  # nothing from another origin
    for name, kind in (("account.js", "text/javascript"), ("account.css", "text/css")):
        resp = await central.get(f"/account/assets/{name}")
        assert resp.status == 200 and resp.content_type == kind
        packaged = resources.files("central") / "web" / "account" / name
        assert await resp.read() == packaged.read_bytes()
    for name in ("index.html", "..%2Fapp.py", "nothing.js"):
        assert (await central.get(f"/account/assets/{name}")).status == 404


def test_the_page_is_declared_package_data_so_an_install_ships_it():
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    declared = config["tool"]["setuptools"]["package-data"]["central"]
    shipped = {p.name for p in (root / "central" / "web" / "account").iterdir()}
    assert shipped == set(api_account.PAGE_FILES)
    assert all(any(fnmatch(f"web/account/{name}", g) for g in declared) for name in shipped)


def test_codes_and_contacts_hash_under_a_key():
    a = account_sign_in._keyed(b"k1", "account-code", "ach_1", "123456")
    assert a != account_sign_in._keyed(b"k2", "account-code", "ach_1", "123456")
    assert a != account_sign_in._keyed(b"k1", "account-contact", "ach_1", "123456")
