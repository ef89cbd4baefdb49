"""The head-office API of adjustments waiting for a second person: the threshold, the queue,
approve and reject (central.approvals). Asking is `POST /api/v1/customers/{id}/adjustments`,
which answers 202 with the pending approval when the points pass the threshold."""

from __future__ import annotations

from aiohttp import web

from central import approvals
from central.office_auth import audited, caller
from central.roles import APPROVERS, admits
from central.roles import Role as R
from central.web_common import CLOCK, DB, ApiError, field, json_body, query_int
from protocol import bounds

routes = web.RouteTableDef()
PAGE = bounds.IntRange(1, approvals.MAX_PAGE, "limit")


@routes.get("/api/v1/adjustment-policy")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY, R.AUDITOR)
async def get_policy(request: web.Request) -> web.Response:
    return web.json_response({"approval_above": approvals.approval_above(request.app[DB])})


@routes.put("/api/v1/adjustment-policy")
@admits(R.ADMIN)
async def put_policy(request: web.Request) -> web.Response:
    """`approval_above`: adjustments of more points than this (either way) wait for a
    second person; null: none wait."""
    body = await json_body(request)
    if "approval_above" not in body:
        raise ApiError(400, "field 'approval_above' is required (null: no approval needed)")
    value = field(body, "approval_above", int, required=False, within=approvals.THRESHOLD)
    with audited(request, "adjustment-policy.set", "adjustment-policy") as change:
        change.before = {"approval_above": approvals.approval_above(request.app[DB])}
        approvals.set_approval_above(request.app[DB], value, caller(request).id,
                                     request.app[CLOCK]())
        change.after = {"approval_above": value}
    return web.json_response(change.after)


@routes.get("/api/v1/approvals")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY, R.AUDITOR)
async def list_approvals(request: web.Request) -> web.Response:
    """Oldest first; `status` (pending, approved, rejected) filters; `after` (from
    `next_after`) pages on; `limit` up to 500."""
    status = request.query.get("status")
    after = request.query.get("after")
    if after is not None:
        bounds.text(after, "after")
    return web.json_response(approvals.list_approvals(
        request.app[DB], status, after, query_int(request, "limit", 100, within=PAGE)))


def _subject(request: web.Request) -> str:
    return f"approval:{request.match_info['id']}"


@routes.post("/api/v1/approvals/{id}/approve")
@admits(*APPROVERS)
async def approve(request: web.Request) -> web.Response:
    with audited(request, "adjustment.approve", _subject(request)) as change:
        approved = approvals.approve(request.app[DB], request.match_info["id"],
                                     caller(request).id, request.app[CLOCK]())
        change.after = {"customer_id": approved["customer_id"], "points": approved["points"],
                        "requested_by": approved["requested_by"],
                        "balance": approved["customer"]["balance"]}
    return web.json_response(approved)


@routes.post("/api/v1/approvals/{id}/reject")
@admits(*APPROVERS)
async def reject(request: web.Request) -> web.Response:
    body = await json_body(request)
    with audited(request, "adjustment.reject", _subject(request)) as change:
        change.after = approvals.reject(request.app[DB], request.match_info["id"],
                                        caller(request).id, field(body, "note", str,
                                                                  required=False),
                                        request.app[CLOCK]())
    return web.json_response(change.after)
