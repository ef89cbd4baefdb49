"""The head-office API of messages to customers (central.messages): templates per kind and
language, quiet hours and the triggers' days, how a customer is reached, and the outbox.

- `GET /api/v1/message-templates`; `PUT` one {kind, language, subject, body}: rendered
  against the kind's sample parameters first, refused with 400 naming the field if it
  would not render (admin, marketing; audited).
- `GET /api/v1/message-settings`; `PUT` {quiet_from, quiet_to, expiring_days, idle_days}.
- `GET /api/v1/message-contacts/{id}`, `PUT` {email, push_token, language, home_store,
  service_opt_out, source}: personal data (support, admin; audited, values masked).
- `GET /api/v1/messages?status=&kind=&customer_id=&channel=&before=&limit=`: the outbox,
  newest first, with counts by status and of possible duplicates (support, admin,
  auditor); filtered by customer, a read about a person, so audited.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from central import message_templates, messages
from central.office_auth import audited, caller
from central.roles import Role as R
from central.roles import admits
from central.web_common import CLOCK, DB, ApiError, json_body, query_int
from protocol import bounds

routes = web.RouteTableDef()
PAGE = bounds.IntRange(1, 500, "limit")
ID = bounds.IntRange(1, 2**62, "before")


@routes.get("/api/v1/message-templates")
@admits(R.ADMIN, R.MARKETING, R.SUPPORT, R.AUDITOR)
async def get_templates(request: web.Request) -> web.Response:
    return web.json_response({"templates": message_templates.listing(request.app[DB])})


@routes.put("/api/v1/message-templates")
@admits(R.ADMIN, R.MARKETING)
async def put_template(request: web.Request) -> web.Response:
    body = await json_body(request)
    unknown = set(body) - {"kind", "language", "subject", "body"}
    if unknown:
        raise ApiError(400, f"field '{sorted(unknown)[0]}' is not part of a template")
    text = message_templates.check(body.get("kind"), body.get("language"),
                                   body.get("subject"), body.get("body"))
    kind, language = str(body["kind"]), str(body["language"])
    conn = request.app[DB]
    with audited(request, "message-template.save", f"message-template:{kind}/{language}") \
            as change:
        before = message_templates.text_for(conn, kind, language)
        change.before = asdict(before)
        message_templates.save(conn, kind, language, text, caller(request).id,
                               request.app[CLOCK]())
        change.after = asdict(text)
    return web.json_response({"kind": kind, "language": language, **asdict(text)})


def _settings(s: messages.Settings) -> dict[str, Any]:
    return {"quiet_from": s.quiet_from.strftime("%H:%M"),
            "quiet_to": s.quiet_to.strftime("%H:%M"),
            "expiring_days": s.expiring_days, "idle_days": s.idle_days}


@routes.get("/api/v1/message-settings")
@admits(R.ADMIN, R.MARKETING, R.SUPPORT, R.AUDITOR)
async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(_settings(messages.settings(request.app[DB])))


@routes.put("/api/v1/message-settings")
@admits(R.ADMIN, R.MARKETING)
async def put_settings(request: web.Request) -> web.Response:
    body = await json_body(request)
    conn = request.app[DB]
    with audited(request, "message-settings.set", "message-settings") as change:
        change.before = _settings(messages.settings(conn))
        saved = messages.save_settings(conn, body, caller(request).id, request.app[CLOCK]())
        change.after = _settings(saved)
    return web.json_response(change.after)


def _contacts(c: messages.Contacts) -> dict[str, Any]:
    return {"email": c.email, "phone": c.phone, "push_token": c.push_token,
            "language": c.language, "home_store": c.home_store,
            "service_opt_out": c.service_opt_out}


def _customer(request: web.Request) -> str:
    return request.match_info["id"]


@routes.get("/api/v1/message-contacts/{id}")
@admits(R.ADMIN, R.SUPPORT)
async def get_contacts(request: web.Request) -> web.Response:
    cid = _customer(request)
    with audited(request, "message-contacts.read", f"customer:{cid}"):
        found = messages.contacts(request.app[DB], cid)
        if found is None:
            raise ApiError(404, "no such customer (or their personal data was erased)")
    return web.json_response(_contacts(found))


@routes.put("/api/v1/message-contacts/{id}")
@admits(R.ADMIN, R.SUPPORT)
async def put_contacts(request: web.Request) -> web.Response:
    """Any of email, push_token, language, home_store, service_opt_out; `source` says where
    the customer gave them (a form at store 42, the app)."""
    body = await json_body(request)
    source = body.pop("source", None)
    if not body:
        raise ApiError(400, f"give at least one of {', '.join(messages.CONTACT_FIELDS)}")
    cid = _customer(request)
    with audited(request, "message-contacts.set", f"customer:{cid}") as change:
        # The audit masks e-mail and contact values (central.audit.PERSONAL)
        change.before = {"changed": sorted(body)}
        saved = messages.set_contacts(request.app[DB], cid, body, source, caller(request).id,
                                      request.app[CLOCK]())
        change.after = {"changed": sorted(body),
                        "service_opt_out": saved.service_opt_out, "source": source}
    return web.json_response(_contacts(saved))


@routes.get("/api/v1/messages")
@admits(R.ADMIN, R.SUPPORT, R.AUDITOR)
async def list_messages(request: web.Request) -> web.Response:
    filters = {}
    for name in messages.LIST_FILTERS:
        value = request.query.get(name)
        if value is not None:
            if not 0 < len(value) <= 200:
                raise ApiError(400, f"query '{name}' must be 1 to 200 characters")
            filters[name] = value
    if "status" in filters and filters["status"] not in messages.STATUSES:
        raise ApiError(400, f"query 'status' must be one of {', '.join(messages.STATUSES)}")
    if "channel" in filters and filters["channel"] not in messages.CHANNELS:
        raise ApiError(400, f"query 'channel' must be one of {', '.join(messages.CHANNELS)}")
    before = query_int(request, "before", None, within=ID)
    limit = query_int(request, "limit", 100, within=PAGE)
    conn = request.app[DB]
    if "customer_id" in filters:  # what was sent to one person: a read of their data
        with audited(request, "messages.read", f"customer:{filters['customer_id']}"):
            rows = messages.listing(conn, filters, before, limit)
    else:
        rows = messages.listing(conn, filters, before, limit)
    return web.json_response({
        "messages": rows, "counts": messages.counts(conn),
        "next_before": rows[-1]["id"] if len(rows) == limit else None})
