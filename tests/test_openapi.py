"""The OpenAPI document (central.openapi, central.openapi_routes) against the routes the
central serves, errors as RFC 9457 problems, and schemathesis against a live central.

The schemathesis run sends every described operation generated requests (a fixed seed,
EXAMPLES each) with a staff admin token and checks: no 5xx, every status, content type,
header and body as the document says.
"""

from __future__ import annotations

import asyncio
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

from central import openapi, staff
from central.app import make_app
from central.client_source import TrustedProxies
from central.clock import utcnow
from central.db import Unavailable
from central.openapi_routes import LEFT_OUT, OPERATIONS
from central.roles import EVERYONE, admits
from central.web_common import DB, PROBLEM_JSON, SECRETS
from tests.api_servers import ServerThread


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


def test_the_document_is_openapi_3_with_a_problem_for_every_error():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(doc)  # loads: its references resolve
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["default"] == {"$ref": "#/components/responses/Problem"}
            assert op["security"] == ([] if path.startswith("/sync/") else
                                      [{"staffToken": []}]), (method, path)
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
SCHEMA = schemathesis.openapi.from_dict(openapi.document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


class Live:
    def __init__(self, server: ServerThread, token: str) -> None:
        self.server, self.url = server, f"http://127.0.0.1:{server.port}"
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """A central on SQLite in a thread of its own, with a staff admin account."""
    data = tmp_path_factory.mktemp("schemathesis")

    async def build() -> web.Application:
        return make_app(data / "central", reprice_every=None)

    server = ServerThread(build).start()

    async def admin() -> str:
        await asyncio.sleep(0)
        app = server.app
        _, token = staff.add(app[DB], app[SECRETS].staff_token_key, "Schemathesis",
                             "admin", "test", utcnow())
        return token

    try:
        yield Live(server, server.call(admin()))
    finally:
        server.stop()


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(case, live):
    case.call_and_validate(base_url=live.url, headers=live.headers, checks=CHECKS)
