"""Staff accounts and roles: every head-office route × every role, tokens, the admin token.

The table below is the specification, written apart from the code: each route and the roles
it admits. The walk checks that the app's routes are exactly these, then sends every route
a request with each role's token: an admitted role gets past the role check (whatever the
route then says of the dummy request), every other role gets 403, no token or a wrong one
401. docs/roles.md is this table in words.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from central import staff
from central.app import make_app
from central.client_source import TrustedProxies
from central.roles import ROLES, Role, admitted
from central.web_common import DB, SECRETS

A, M, N, S, Y, U = (Role.ADMIN, Role.MARKETING, Role.ANALYST, Role.SUPPORT, Role.SECURITY,
                    Role.AUDITOR)
EXPECTED: dict[tuple[str, str], set[Role]] = {
    ("POST", "/api/v1/customers"): {A, S},
    ("POST", "/api/v1/customers/lookup"): {A, S, Y},
    ("GET", "/api/v1/customers"): {A, S, Y},
    ("POST", "/api/v1/customers/search"): {A, S, Y},
    ("POST", "/api/v1/customers/{id}/block"): {A, S, Y},
    ("POST", "/api/v1/customers/{id}/unblock"): {A, S, Y},
    ("POST", "/api/v1/customers/{id}/cards"): {A, S},
    ("DELETE", "/api/v1/customers/{id}/cards/{card}"): {A, S},
    ("GET", "/api/v1/customers/{id}"): {A, S, Y},
    ("PATCH", "/api/v1/customers/{id}"): {A, S},
    ("POST", "/api/v1/customers/{id}/consents"): {A, S},
    ("GET", "/api/v1/customers/{id}/personal-data"): {A, S},
    ("POST", "/api/v1/customers/{id}/erase"): {A, S},
    ("POST", "/api/v1/customers/{id}/offers"): {A, M, S},
    ("POST", "/api/v1/customers/{id}/adjustments"): {A, S},
    ("POST", "/api/v1/customers/{id}/app-code"): {A, S},
    ("GET", "/api/v1/tills"): {A, Y, N, U},
    ("POST", "/api/v1/tills/{id}/revoke"): {A, Y},
    ("POST", "/api/v1/tills/{id}/release"): {A, Y},
    ("GET", "/api/v1/tills/{id}/journal"): {A, Y, U},
    ("GET", "/api/v1/tills/{id}/journal/verify"): {A, Y, U},
    ("POST", "/api/v1/enrolment-tokens"): {A},
    ("GET", "/api/v1/ruleset"): set(ROLES),
    ("PUT", "/api/v1/ruleset"): {A, M},
    ("GET", "/api/v1/alerts"): {A, Y, U},
    ("POST", "/api/v1/alerts/{id}/ack"): {A, Y},
    ("GET", "/api/v1/summary"): {A, M, N, Y, U},
    ("GET", "/api/v1/kpis"): {A, M, N, Y, U},
    ("GET", "/api/v1/campaigns"): set(ROLES),
    ("POST", "/api/v1/campaigns"): {A, M},
    ("GET", "/api/v1/campaigns/{id}"): set(ROLES),
    ("PATCH", "/api/v1/campaigns/{id}"): {A, M},
    ("POST", "/api/v1/campaigns/{id}/schedule"): {A, M},
    ("POST", "/api/v1/campaigns/{id}/pause"): {A, M},
    ("POST", "/api/v1/campaigns/{id}/resume"): {A, M},
    ("POST", "/api/v1/campaigns/{id}/end"): {A, M},
    ("POST", "/api/v1/campaigns/dry-run"): {A, M, N},
    ("POST", "/api/v1/campaigns/{id}/dry-run"): {A, M, N},
    ("GET", "/api/v1/campaigns/{id}/figures"): set(ROLES),
    ("GET", "/api/v1/campaigns/{id}/roi"): {A, M, N},
    ("GET", "/api/v1/product-costs"): {A, M, N},
    ("PUT", "/api/v1/product-costs"): {A, M},
    ("GET", "/api/v1/offline-caps"): {A, Y, N, U},
    ("PUT", "/api/v1/offline-caps"): {A, Y},
    ("GET", "/api/v1/fraud-rules"): {A, Y, U},
    ("PUT", "/api/v1/fraud-rules"): {A, Y},
    ("GET", "/api/v1/fraud-hits"): {A, Y, U},
    ("GET", "/api/v1/fraud-hits/{id}"): {A, Y, U},
    ("POST", "/api/v1/fraud-hits/{id}/review"): {A, Y},
    ("POST", "/api/v1/fraud-hits/{id}/hold"): {A, Y},
    ("GET", "/api/v1/repricing"): {A, Y, N, U},
    ("GET", "/api/v1/staff/me"): set(ROLES),
    ("GET", "/api/v1/dashboard"): set(ROLES),
    ("GET", "/api/v1/staff"): {A, Y, U},
    ("POST", "/api/v1/staff"): {A},
    ("POST", "/api/v1/staff/{id}/revoke"): {A, Y},
    ("POST", "/api/v1/staff/{id}/token"): {A},
    ("GET", "/api/v1/audit"): {A, Y, U},
    ("GET", "/api/v1/audit/verify"): {A, Y, U},
    ("GET", "/api/v1/adjustment-policy"): {A, S, Y, U},
    ("PUT", "/api/v1/adjustment-policy"): {A},
    ("GET", "/api/v1/approvals"): {A, S, Y, U},
    ("POST", "/api/v1/approvals/{id}/approve"): {A, Y},
    ("POST", "/api/v1/approvals/{id}/reject"): {A, Y},
    ("GET", "/api/v1/message-templates"): {A, M, S, U},
    ("PUT", "/api/v1/message-templates"): {A, M},
    ("GET", "/api/v1/message-settings"): {A, M, S, U},
    ("PUT", "/api/v1/message-settings"): {A, M},
    ("GET", "/api/v1/message-contacts/{id}"): {A, S},
    ("PUT", "/api/v1/message-contacts/{id}"): {A, S},
    ("GET", "/api/v1/messages"): {A, S, U},
    ("GET", "/api/v1/channels"): {A},
    ("POST", "/api/v1/channels"): {A},
    ("POST", "/api/v1/channels/{id}/revoke"): {A},
    ("GET", "/api/v1/openapi.json"): set(ROLES),
}


def office_routes(app) -> dict[tuple[str, str], object]:
    found = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method != "HEAD":
            found[(route.method, path)] = route.handler
    return found


def tokens_by_role(central, clock) -> dict[Role, dict[str, str]]:
    out = {}
    for role in ROLES:
        _, token = staff.add(central.db, central.secrets.staff_token_key, f"{role} person",
                             role, "test", clock())
        out[role] = {"Authorization": f"Bearer {token}"}
    return out


@pytest.fixture
async def proxied(aiohttp_client, tmp_path: Path, clock, database):
    """A central behind a trusted proxy on the loopback: the walk's wrong tokens come from
    many sources, so the throttle of wrong tokens (tested on its own) stays out of it."""
    app = make_app(tmp_path / "proxied", clock, reprice_every=None,
                   trusted_proxies=TrustedProxies.parse(["127.0.0.0/8"]),
                   database=database if isinstance(database, str) else None)
    client = await aiohttp_client(app)
    client.db, client.secrets = app[DB], app[SECRETS]
    return client


async def test_every_route_admits_exactly_its_roles(proxied, clock):
    central = proxied
    routes = office_routes(central.server.app)
    assert {k: admitted(h) for k, h in routes.items()} == EXPECTED
    headers = tokens_by_role(central, clock)
    sources = 0
    for (method, path), roles in EXPECTED.items():
        url = re.sub(r"\{\w+\}", "nobody1", path)  # every path parameter
        for role in ROLES:
            resp = await central.request(method, url, headers=headers[role], json={})
            said = (await resp.json()).get("error", "")
            refused_for_role = resp.status == 403 and "may not" in said
            assert refused_for_role == (role not in roles), (method, path, role, resp.status)
            assert resp.status != 401, (method, path, role)
        for wrong in ({}, {"Authorization": "Bearer st_0000000000:guess"},
                      {"Authorization": "Bearer not-the-admin-token"}):
            sources += 1
            resp = await central.request(method, url, json={}, headers={
                **wrong, "X-Forwarded-For": f"198.51.{sources // 250}.{sources % 250}"})
            assert resp.status == 401, (method, path, wrong)


async def test_a_route_that_declares_no_roles_admits_nobody(aiohttp_client, tmp_path, clock):
    from aiohttp import web

    app = make_app(tmp_path / "c", clock, reprice_every=None)

    async def forgotten(request: web.Request) -> web.Response:
        return web.json_response({"leaked": True})

    app.router.add_get("/api/v1/forgotten", forgotten)
    client = await aiohttp_client(app)
    resp = await client.get("/api/v1/forgotten", headers={
        "Authorization": f"Bearer {app[SECRETS].admin_token}"})
    assert resp.status == 403 and "leaked" not in await resp.text()


async def test_tokens_are_stored_hashed_and_expire_and_revoke(central, clock):
    account, token = staff.add(central.db, central.secrets.staff_token_key, "Olga",
                               "support", "test", clock(), days=1)
    me = {"Authorization": f"Bearer {token}"}
    stored = central.db.execute("SELECT token_hash FROM staff WHERE id = ?",
                                (account.id,)).fetchone()[0]
    assert token.split(":")[1] not in stored and len(stored) == 64
    body = await (await central.get("/api/v1/staff/me", headers=me)).json()
    assert body["id"] == account.id and body["role"] == "support"
    # Another account's id with this secret proves nothing.
    other, _ = staff.add(central.db, central.secrets.staff_token_key, "Ivan", "support",
                         "test", clock())
    forged = {"Authorization": f"Bearer {other.id}:{token.split(':')[1]}"}
    assert (await central.get("/api/v1/staff/me", headers=forged)).status == 401
    clock.advance(days=1)
    assert (await central.get("/api/v1/staff/me", headers=me)).status == 401  # expired
    # An admin reissues it; the new token works, the old one never again.
    resp = await central.post(f"/api/v1/staff/{account.id}/token", headers=central.admin,
                              json={"days": 30})
    assert resp.status == 201
    fresh = {"Authorization": f"Bearer {(await resp.json())['token']}"}
    assert (await central.get("/api/v1/staff/me", headers=fresh)).status == 200
    assert (await central.get("/api/v1/staff/me", headers=me)).status == 401
    resp = await central.post(f"/api/v1/staff/{account.id}/revoke", headers=central.admin)
    assert resp.status == 200 and (await resp.json())["revoked_by"] == staff.LEGACY_ADMIN
    assert (await central.get("/api/v1/staff/me", headers=fresh)).status == 401
    # A revoked account gets no new token.
    resp = await central.post(f"/api/v1/staff/{account.id}/token", headers=central.admin,
                              json={})
    assert resp.status == 409


async def test_admins_add_list_and_revoke_staff_through_the_api(central):
    resp = await central.post("/api/v1/staff", headers=central.admin,
                              json={"name": "Anna", "role": "marketing"})
    assert resp.status == 201
    anna = await resp.json()
    anna_h = {"Authorization": f"Bearer {anna['token']}"}
    listed = (await (await central.get("/api/v1/staff", headers=central.admin)).json())["staff"]
    assert {a["id"]: a["role"] for a in listed} == {
        staff.LEGACY_ADMIN: "admin", anna["id"]: "marketing"}
    assert all("token" not in a and "token_hash" not in a for a in listed)
    # Marketing makes no staff; bad fields are named.
    assert (await central.post("/api/v1/staff", headers=anna_h,
                               json={"name": "x", "role": "admin"})).status == 403
    for body, named in [({"name": "x", "role": "boss"}, "role"), ({"role": "admin"}, "name"),
                        ({"name": "x", "role": "admin", "days": 0}, "days"),
                        ({"name": "x", "role": "admin", "days": "9"}, "days")]:
        resp = await central.post("/api/v1/staff", headers=central.admin, json=body)
        assert resp.status == 400 and named in (await resp.json())["error"], body
    assert (await central.post("/api/v1/staff/st_nobody/revoke",
                               headers=central.admin)).status == 404


async def test_the_admin_token_works_until_its_account_is_revoked(central, clock):
    _, token = staff.add(central.db, central.secrets.staff_token_key, "Root", "admin",
                         "test", clock())
    named_admin = {"Authorization": f"Bearer {token}"}
    me = await (await central.get("/api/v1/staff/me", headers=central.admin)).json()
    assert me["id"] == staff.LEGACY_ADMIN and me["role"] == "admin"
    # Nobody revokes their own account (the last admin would lock everyone out).
    assert (await central.post(f"/api/v1/staff/{staff.LEGACY_ADMIN}/revoke",
                               headers=central.admin)).status == 409
    assert (await central.post(f"/api/v1/staff/{staff.LEGACY_ADMIN}/revoke",
                               headers=named_admin)).status == 200
    assert (await central.get("/api/v1/tills", headers=central.admin)).status == 401
    assert (await central.get("/api/v1/tills", headers=named_admin)).status == 200


async def test_the_actor_comes_from_the_token_not_the_body(central, clock):
    _, token = staff.add(central.db, central.secrets.staff_token_key, "Olga", "support",
                         "test", clock())
    olga = {"Authorization": f"Bearer {token}"}
    olga_id = token.split(":")[0]
    resp = await central.post("/api/v1/customers", headers=olga,
                              json={"card_number": "4000000000000002"})
    cid = (await resp.json())["id"]
    resp = await central.post(f"/api/v1/customers/{cid}/adjustments", headers=olga,
                              json={"points": 10, "reason": "goodwill", "actor": "the CEO"})
    assert resp.status == 200
    row = central.db.execute("SELECT actor FROM ledger WHERE customer_id = ? AND kind ="
                             " 'adjust'", (cid,)).fetchone()
    assert row["actor"] == olga_id
    # Still a field: it must be text.
    resp = await central.post(f"/api/v1/customers/{cid}/adjustments", headers=olga,
                              json={"points": 10, "reason": "r", "actor": 7})
    assert resp.status == 400 and "actor" in (await resp.json())["error"]


def test_staff_add_prints_the_token_once(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "tillpoint", "central", "staff", "add",
                          "--data", str(tmp_path), "--name", "Olga", "--role", "security"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert re.fullmatch(r"st_[0-9a-f]{10}:[A-Za-z0-9_-]{43}", token)
    listed = subprocess.run([sys.executable, "-m", "tillpoint", "central", "staff", "list",
                             "--data", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert token.split(":")[0] in listed.stdout and token.split(":")[1] not in listed.stdout
    bad = subprocess.run([sys.executable, "-m", "tillpoint", "central", "staff", "add",
                          "--data", str(tmp_path), "--name", " ", "--role", "admin"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "name" in bad.stderr

