"""The head-office API of the audit log: records with filters and paging, and a check of
the whole chain."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from central import audit
from central.clock import iso
from central.roles import Role as R
from central.roles import admits
from central.web_common import DB, ApiError, query_int
from protocol import bounds

routes = web.RouteTableDef()
PAGE = bounds.IntRange(1, audit.MAX_PAGE, "limit")


def _instant(request: web.Request, name: str) -> str | None:
    text = request.query.get(name)
    if text is None:
        return None
    bounds.text(text, name)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"field {name!r} must be an ISO 8601 date-time") from None
    if at.tzinfo is None:
        raise ApiError(400, f"field {name!r} must carry a UTC offset")
    return iso(at)


@routes.get("/api/v1/audit")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def list_audit(request: web.Request) -> web.Response:
    """Newest first; filters `actor`, `action`, `subject` (exact), `since` (inclusive) and
    `until` (exclusive) as ISO 8601 with an offset; `before` (from `next_before`) pages on;
    `limit` up to 500."""
    q = request.query
    for name in ("actor", "action", "subject"):
        if name in q:
            bounds.text(q[name], name)
    return web.json_response(audit.query(request.app[DB], audit.AuditQuery(
        actor=q.get("actor"), action=q.get("action"), subject=q.get("subject"),
        since=_instant(request, "since"), until=_instant(request, "until"),
        before=query_int(request, "before", None),
        limit=query_int(request, "limit", 100, within=PAGE))))


@routes.get("/api/v1/audit/verify")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def verify_audit(request: web.Request) -> web.Response:
    """Walk the chain from its genesis: how many records, and the first break if any."""
    return web.json_response(audit.verify(request.app[DB]))
