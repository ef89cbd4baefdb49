"""The central's OpenAPI 3 document, built from central.openapi_routes, and served at
GET /api/v1/openapi.json.

The document is written apart from the handlers, as a table of one `Op` per route, so that
tests/test_openapi.py can hold the two against each other: a route the table does not
describe fails it, and so does a description whose route does not exist (`coverage`).
Errors are described once, as RFC 9457 problems (central.web_common.problem), and every
operation answers them as its `default` response.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from central.roles import EVERYONE, admits
from central.web_common import PROBLEM_JSON

Schema = dict[str, Any]
TITLE = "Tillpoint central"
VERSION = "1"

# -- JSON Schema fragments, in the OpenAPI 3.0 dialect (nullable, not type lists) ---------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
ANY_OBJ: Schema = {"type": "object"}


def null(schema: Schema) -> Schema:
    """The schema, or null."""
    return {**schema, "nullable": True}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: Mapping[str, Schema] | None = None,
        optional: Mapping[str, Schema] | None = None) -> Schema:
    """An object with these members; others may come too (answers grow, clients ignore)."""
    required, optional = dict(required or {}), dict(optional or {})
    out: Schema = {"type": "object", "properties": {**required, **optional}}
    if required:
        out["required"] = sorted(required)
    return out


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Query:
    """A query parameter: its name, schema and what it does."""

    name: str
    schema: Schema
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    """One route's description. `answer` is the JSON body of the success status `ok`;
    `also` other success statuses and their bodies (202 for an adjustment that waits);
    `body` the JSON request body, if it takes one (`body_required` False: it may be absent);
    `media` other media types of the success answer (CSV); `example` a request body that
    works (schemathesis sends it first). Path parameters come from the route's `{name}`s,
    as strings."""

    summary: str
    answer: Schema
    ok: int = 200
    body: Schema | None = None
    body_required: bool = True
    query: tuple[Query, ...] = ()
    also: Mapping[int, Schema] = field(default_factory=dict)
    media: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)
    auth: str | None = "staffToken"  # a name in SECURITY_SCHEMES; None: no credential
    tag: str = ""
    example: Any = None


# How callers prove who they are; an Op names one (or None).
SECURITY_SCHEMES: dict[str, Schema] = {
    "staffToken": {"type": "http", "scheme": "bearer",
                   "description": "a staff token (docs/roles.md) or the admin token"},
    "channelToken": {"type": "http", "scheme": "bearer",
                     "description": "a sales channel's token (POST /api/v1/channels)"},
    "accountSession": {"type": "http", "scheme": "bearer",
                       "description": "a customer's session (POST /account/v1/sign-in), as"
                                      " a bearer token or the HttpOnly cookie"},
}

PROBLEM: Schema = obj(
    {"type": STR, "title": STR, "status": {"type": "integer", "minimum": 100, "maximum": 599},
     "detail": STR,
     "error": {**STR, "description": "the detail again, for clients older than RFC 9457"}},
    {"retry_after": {**INT, "description": "503 only: seconds, as in Retry-After"}})


def _operation(method: str, path: str, op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(method, path)}
    if op.tag:
        out["tags"] = [op.tag]
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
              for name in re.findall(r"\{(\w+)\}", path)]
    params += [{"name": q.name, "in": "query", "required": q.required, "schema": q.schema,
                **({"description": q.description} if q.description else {})}
               for q in op.query]
    if params:
        out["parameters"] = params
    if op.body is not None:
        media: dict[str, Any] = {"schema": op.body}
        if op.example is not None:
            media["example"] = op.example
        out["requestBody"] = {"required": op.body_required,
                              "content": {"application/json": media}}
    answers: dict[str, Any] = {}
    for status, schema in {op.ok: op.answer, **op.also}.items():
        answer: dict[str, Any] = {"description": "success"}
        if status != 204:  # no content
            answer["content"] = {"application/json": {"schema": schema},
                                 **{media: {"schema": s} for media, s in op.media.items()}}
        if op.headers:
            answer["headers"] = {name: {"schema": s} for name, s in op.headers.items()}
        answers[str(status)] = answer
    answers["default"] = {"$ref": "#/components/responses/Problem"}
    out["responses"] = answers
    out["security"] = [] if op.auth is None else [{op.auth: []}]
    return out


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api/v1/")).strip("_")
    return f"{method.lower()}_{words}"


def build(ops: Mapping[tuple[str, str], Op]) -> dict[str, Any]:
    """The OpenAPI 3.0 document of these operations."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in sorted(ops.items()):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op)
    return {
        "openapi": "3.0.3",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "The head-office API (staff token: `Authorization: Bearer "
                                "<token>`, roles in docs/roles.md), the sales channels' API, "
                                "the customer's own account and the tills' enrolment. Every "
                                "error is an RFC 9457 problem."},
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM},
            "responses": {"Problem": {
                "description": "refused or failed: an RFC 9457 problem; 429 and 503 carry "
                               "Retry-After",
                "headers": {"Retry-After": {"schema": INT}},
                "content": {PROBLEM_JSON: {"schema": ref("Problem")}}}},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    from central.openapi_routes import OPERATIONS  # the table imports this module's helpers

    return build(OPERATIONS)


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD is GET's shadow)."""
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return found


def coverage(served: Iterable[tuple[str, str]], doc: Mapping[str, Any],
             left_out: Mapping[tuple[str, str], str]) -> tuple[set, set]:
    """(routes served that the document neither describes nor leaves out, operations the
    document describes that no route serves)."""
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = set(served)
    return served - described - set(left_out), described - served


routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
@admits(*EVERYONE)  # the shape of the API, no data: any staff token reads it
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())
