"""Head office's dashboard: a static page at /dashboard, and what the signed-in role may read.

The page, its script and its style ship in the package (central/web/dashboard/) and need
nothing from the internet. They carry no data and no secret, so they are served without a
token (the staff middleware guards /api/ only); the script asks for the staff token on its
sign-in form, keeps it in sessionStorage (gone with the tab) and sends it as
`Authorization: Bearer` to the JSON APIs, so the browser never sends it by itself: no
cookie, no CSRF. The token never goes into a URL.

XSS: the Content-Security-Policy admits only the page's own script and style, and requires
Trusted Types, so a stray `innerHTML` of data throws instead of parsing it: the script
inserts everything as text.

`GET /api/v1/dashboard` tells the page who signed in and which of its sections that role
may read, worked out from the `@admits` of the routes each section calls, so the page holds
no copy of the roles table (docs/roles.md).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

from central.office_auth import caller
from central.roles import EVERYONE, Role, admits, admitted

routes = web.RouteTableDef()

ASSETS = resources.files("central") / "web" / "dashboard"
# Name -> content type: only these are served, so no path reaches outside the folder.
FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
       " img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none';"
       " require-trusted-types-for 'script'; trusted-types 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Each section of the page and the API routes it reads; a section is shown to a role that
# every one of its routes admits.
SECTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "kpis": (("GET", "/api/v1/kpis"),),
    "campaigns": (("GET", "/api/v1/campaigns"), ("GET", "/api/v1/campaigns/{id}/figures")),
    "alerts": (("GET", "/api/v1/alerts"),),
    "fraud_hits": (("GET", "/api/v1/fraud-hits"),),
    "customers": (("POST", "/api/v1/customers/lookup"), ("GET", "/api/v1/customers/{id}")),
}


def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


@routes.get("/dashboard")
async def page(request: web.Request) -> web.Response:
    return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8",
                        headers=HEADERS)


@routes.get("/dashboard/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound(reason="no such file of the dashboard")
    return web.Response(body=_asset(name), content_type=FILES[name], charset="utf-8",
                        headers=HEADERS)


def readable(app: web.Application, role: Role) -> dict[str, bool]:
    """Which sections `role` may read; a section whose route is missing is not readable."""
    declared: dict[tuple[str, str], frozenset[Role] | None] = {}
    for route in app.router.routes():
        if route.resource is not None:
            declared[(route.method, route.resource.canonical)] = admitted(route.handler)
    return {name: all(role in (declared.get(r) or ()) for r in needs)
            for name, needs in SECTIONS.items()}


@routes.get("/api/v1/dashboard")
@admits(*EVERYONE)
async def sections(request: web.Request) -> web.Response:
    account = caller(request)
    body: dict[str, Any] = {
        "account": {"id": account.id, "name": account.name, "role": str(account.role),
                    "expires_at": account.expires_at},
        "sections": readable(request.app, account.role),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})
