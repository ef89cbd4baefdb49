"""The OpenAPI document (central.openapi, central.openapi_routes) against the routes the
central serves, errors as RFC 9457 problems, and schemathesis against a live central.

The schemathesis run sends every described operation generated requests, valid and not
(a fixed seed, EXAMPLES each), with a staff admin token (a channel's or a customer's
session on their APIs), to a central on each database, and
checks: no 5xx, every status, content type, header and body as the document says. About
two minutes for both databases (91 operations), hence `slow`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from central import api_account, openapi, staff
from central.app import make_app
from central.auth_failures import Throttle
from central.client_source import TrustedProxies
from central.clock import utcnow
from central.db import Unavailable
from central.message_channels import LogChannel
from central.openapi_routes import LEFT_OUT, OPERATIONS
from central.roles import EVERYONE, admits
from central.web_common import DB, PROBLEM_JSON, SECRETS, THROTTLE
from tests.api_servers import ServerThread
from tests.databases import KINDS, fresh_database


def test_every_route_is_described_and_every_description_has_its_route(tmp_path: Path):
    app = make_app(tmp_path / "c", reprice_every=None)
    undescribed, unserved = openapi.coverage(openapi.routes_of(app), openapi.document(),
                                             LEFT_OUT)
    assert undescribed == set(), "describe these in central/openapi_routes.py"
    assert unserved == set(), "these descriptions name no route: remove or fix them"
    # Nothing is both described and left out.
    assert not set(OPERATIONS) & set(LEFT_OUT)


def test_coverage_finds_a_route_undescribed_and_a_description_without_its_route(
        tmp_path: Path):
    app = make_app(tmp_path / "c", reprice_every=None)

    async def extra(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_post("/api/v1/not-described/{id}", extra)
    doc = openapi.build({**OPERATIONS, ("GET", "/api/v1/gone"): OPERATIONS[
        ("GET", "/api/v1/staff/me")]})
    undescribed, unserved = openapi.coverage(openapi.routes_of(app), doc, LEFT_OUT)
    assert undescribed == {("POST", "/api/v1/not-described/{id}")}
    assert unserved == {("GET", "/api/v1/gone")}


def expected_security(path: str) -> list[dict]:
    """Head office: a staff token; channels: their own; a customer: a session once signed
    in; enrolment and signing in: nothing yet."""
    if path.startswith(("/sync/", "/account/v1/sign-in")):
        return []
    return [{"accountSession" if path.startswith("/account/") else "channelToken"
             if path.startswith("/channel/") else "staffToken": []}]


def test_the_document_is_openapi_3_with_a_problem_for_every_error():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(doc)  # loads: its references resolve
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["default"] == {"$ref": "#/components/responses/Problem"}
            assert op["security"] == expected_security(path), (method, path)
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "error"} <= set(problem["required"])


async def test_the_document_is_served_to_any_staff_token(central, clock):
    resp = await central.get("/api/v1/openapi.json")
    assert resp.status == 401 and resp.content_type == PROBLEM_JSON
    for role in EVERYONE:
        _, token = staff.add(central.db, central.secrets.staff_token_key, f"{role} one",
                             role, "test", clock())
        resp = await central.get("/api/v1/openapi.json",
                                 headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, role
        assert (await resp.json()) == openapi.document()


async def test_errors_are_rfc_9457_problems_keeping_error(central):
    async def problem_of(resp) -> dict:
        assert resp.content_type == PROBLEM_JSON, resp.status
        body = await resp.json()
        assert body["status"] == resp.status and body["type"] == "about:blank"
        assert body["title"] and body["detail"] == body["error"]
        return body

    body = await problem_of(await central.get("/api/v1/tills"))  # no token
    assert body["status"] == 401 and "Bearer" in body["detail"]
    body = await problem_of(await central.post("/api/v1/staff", headers=central.admin,
                                               json={"role": "admin"}))
    assert body["status"] == 400 and body["title"] == "Bad Request"
    assert "name" in body["detail"]
    body = await problem_of(await central.get("/api/v1/campaigns/nope",
                                              headers=central.admin))
    assert body["status"] == 404 and body["title"] == "Not Found"
    body = await problem_of(await central.get("/api/v1/nowhere", headers=central.admin))
    assert body["status"] == 404
    body = await problem_of(await central.delete("/api/v1/tills", headers=central.admin))
    assert body["status"] == 405
    body = await problem_of(await central.post(
        "/sync/v1/enroll", data=b"[1]", headers={"Content-Type": "application/json"}))
    assert body["status"] == 400 and "object" in body["detail"]


@pytest.fixture
async def behind_proxy(aiohttp_client, tmp_path: Path, clock):
    app = make_app(tmp_path / "p", clock, reprice_every=None,
                   trusted_proxies=TrustedProxies.parse(["127.0.0.0/8"]))

    @admits(*EVERYONE)
    async def down(request: web.Request) -> web.Response:
        raise Unavailable("the database went away")

    app.router.add_get("/api/v1/down", down)
    client = await aiohttp_client(app)
    client.admin = {"Authorization": f"Bearer {app[SECRETS].admin_token}"}
    return client


async def test_429_and_503_problems_keep_retry_after(behind_proxy):
    resp = await behind_proxy.get("/api/v1/down", headers=behind_proxy.admin)
    assert resp.status == 503 and resp.content_type == PROBLEM_JSON
    body = await resp.json()
    assert int(resp.headers["Retry-After"]) == body["retry_after"] > 0
    assert body["title"] == "Service Unavailable" and "unavailable" in body["error"]
    guesser = {"Authorization": "Bearer guess", "X-Forwarded-For": "203.0.113.66"}
    for _ in range(10):
        assert (await behind_proxy.get("/api/v1/tills", headers=guesser)).status == 401
    resp = await behind_proxy.get("/api/v1/tills", headers=guesser)
    assert resp.status == 429 and resp.content_type == PROBLEM_JSON
    assert int(resp.headers["Retry-After"]) > 0
    body = await resp.json()
    assert body["status"] == 429 and body["title"] == "Too Many Requests"


# -- schemathesis against a live central --------------------------------------------------

EXAMPLES = 25
ANSWERED: dict[str, set[int]] = {}  # operation -> statuses it answered in the run
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


class Live:
    def __init__(self, server: ServerThread, token: str, kind: str) -> None:
        self.server, self.url, self.kind = server, f"http://127.0.0.1:{server.port}", kind
        self.headers = {"Authorization": f"Bearer {token}"}
        self.ids: dict[str, str] = {}  # path prefix -> the id of a record seeded there
        # path prefix -> the credential of the routes there (the longest prefix names it)
        self.credentials: dict[str, dict[str, str]] = {"/": self.headers}

    def credential(self, path: str) -> dict[str, str]:
        return self.credentials[max((p for p in self.credentials if path.startswith(p)),
                                    key=len)]

    def sign_in(self, phone: str) -> dict[str, str]:
        """A customer's bearer session, with the code the development sender logged."""
        asked = self.server.send_json("POST", "/account/v1/sign-in/code", {"phone": phone})
        assert asked.status == 202, asked.body
        sender = self.server.app[api_account.CHANNELS].get("sms")
        assert isinstance(sender, LogChannel)
        code = next(m for m in reversed(sender.sent) if m.to == phone).body[:6]
        session = self.post("/account/v1/sign-in", {"challenge": asked.json()["challenge"],
                                                    "code": code, "session": "bearer"})
        return {"Authorization": f"Bearer {session['token']}"}

    def post(self, path: str, body: dict) -> dict:
        answer = self.server.send_json("POST", path, body, self.headers)
        assert answer.status in (200, 201, 202), (path, answer.status, answer.body)
        return answer.json()


@pytest.fixture(scope="module", params=KINDS)
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A central on each database in turn, in a thread of its own, with a staff admin
    account and a record behind each kind of {id}, so that the run reaches handlers past
    their 404s."""
    data = tmp_path_factory.mktemp("schemathesis")
    with fresh_database(request.param, data) as database:
        yield from _seeded(data, database if isinstance(database, str) else None,
                           request.param)


def _seeded(data: Path, database: str | None, kind: str) -> Iterator[Live]:
    async def build() -> web.Application:
        app = make_app(data / "central", reprice_every=None, database=database)
        # schemathesis also sends requests without the token (they must get 401); the
        # throttle of failed authentications (tested on its own) would then answer every
        # later request 429 and the run would test nothing
        app[THROTTLE] = Throttle(limit=10**9, account_limit=10**9)
        unlimited = Throttle(limit=10**9, account_limit=10**9)
        app[api_account.LIMITS] = api_account.AccountLimits(unlimited, unlimited, unlimited)
        return app

    server = ServerThread(build).start()

    async def admin() -> str:
        app = server.app
        _, token = staff.add(app[DB], app[SECRETS].staff_token_key, "Schemathesis",
                             "admin", "test", utcnow())
        return token

    try:
        central = Live(server, server.call(admin()), kind)
        customer = central.post("/api/v1/customers", {"card_number": "4000000000000002",
                                                      "name": "Seeded", "phone": "+79001112233"})
        central.ids["/api/v1/customers/"] = central.ids["/api/v1/message-contacts/"] = \
            customer["id"]
        # erasure gets one of its own: the others go on reading the first one's contacts
        central.ids["/api/v1/customers/{id}/erase"] = central.post(
            "/api/v1/customers", {"card_number": "4000000000000010", "name": "To erase"})["id"]
        central.post("/api/v1/campaigns", {"id": "seeded", "name": "Seeded 10%",
                                           "effect": {"type": "percent", "percent": 10}})
        central.ids["/api/v1/campaigns/"] = "seeded"
        for path in ("/api/v1/staff/{id}/revoke", "/api/v1/staff/{id}/token"):
            central.ids[path] = central.post(
                "/api/v1/staff", {"name": "Seeded", "role": "analyst"})["id"]
        central.post("/api/v1/customers/lookup", {"card_number": "4000000000000002"})
        server.send_json("PUT", "/api/v1/adjustment-policy", {"approval_above": 100},
                         central.headers)
        # asked by a second person: nobody approves their own request
        support = central.post("/api/v1/staff", {"name": "Support", "role": "support"})
        asked = server.send_json("POST", f"/api/v1/customers/{customer['id']}/adjustments",
                                 {"points": 500, "reason": "seeded"},
                                 {"Authorization": f"Bearer {support['token']}"})
        assert asked.status == 202, asked.body
        waiting = asked.json()
        central.ids["/api/v1/approvals/"] = waiting["id"]
        server.request("GET", "/api/v1/tills")  # no token: an alert, number 1
        central.ids["/api/v1/alerts/"] = "1"
        channel = central.post("/api/v1/channels", {"name": "Web", "kind": "web",
                                                    "store": "web"})
        central.credentials["/channel/"] = {"Authorization": f"Bearer {channel['token']}"}
        central.ids["/api/v1/channels/"] = central.post(
            "/api/v1/channels", {"name": "To revoke", "kind": "app", "store": "app"}
        )["channel"]["id"]
        central.credentials["/account/"] = central.sign_in("+79001112233")
        # erasure and sign-out end a session: each has one of its own
        for path, card, phone in (("/account/v1/erase", "4000000000000028", "+79001112244"),
                                  ("/account/v1/sign-out", "4000000000000036",
                                   "+79001112255")):
            central.post("/api/v1/customers", {"card_number": card, "phone": phone})
            central.credentials[path] = central.sign_in(phone)
        yield central
    finally:
        server.stop()


SEEDED = "seeded-record"  # the example of every {id}; the test puts the live record's id


def with_seeded_examples(doc: dict) -> dict:
    """The document with SEEDED as the example of each path's {id}."""
    doc = json.loads(json.dumps(doc))
    for ops in doc["paths"].values():
        for op in ops.values():
            for param in op.get("parameters", ()):
                if param["in"] == "path":
                    param["example"] = SEEDED
    return doc


# Loaded at import (pytest parametrizes by operation); the ids exist only once the live
# central runs, hence the placeholder.
SCHEMA = schemathesis.openapi.from_dict(with_seeded_examples(openapi.document()))


@pytest.mark.slow
@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(case, live):
    if (case.path_parameters or {}).get("id") == SEEDED:
        # the longest prefix of the path's template names the record
        prefix = max((p for p in live.ids if case.path.startswith(p)), key=len, default="")
        case.path_parameters["id"] = live.ids.get(prefix, SEEDED)
    response = case.call(base_url=live.url, headers=live.credential(case.path))
    ANSWERED.setdefault((live.kind, case.operation.label), set()).add(response.status_code)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.slow
def test_schemathesis_reached_every_handler():
    """Guards the run above: a run answered only 401, 403 or 429 tested nothing."""
    if not ANSWERED:
        pytest.skip("the schemathesis run was not selected")
    for kind in {kind for kind, _ in ANSWERED}:
        mine = {label: statuses for (k, label), statuses in ANSWERED.items() if k == kind}
        past_auth = {label for label, statuses in mine.items()
                     if statuses - {401, 403, 405, 429}}
        assert past_auth == {f"{m} {p}" for m, p in OPERATIONS}, kind
        # and most succeeded at least once, not only refused the input (those that do not
        # need records the run does not make: an enrolled till, a fraud hit, an order)
        succeeded = {label for label, statuses in mine.items()
                     if any(200 <= s < 300 for s in statuses)}
        assert len(succeeded) >= len(OPERATIONS) * 2 // 3, (kind, sorted(set(mine)
                                                                         - succeeded))
