"""The head-office API of staff accounts: who am I, list, add, revoke, reissue a token.

A token is in the answer that makes it and nowhere else: the central keeps its hash.
"""

from __future__ import annotations

from aiohttp import web

from central import staff
from central.office_auth import audited, caller
from central.roles import EVERYONE, admits
from central.roles import Role as R
from central.web_common import CLOCK, DB, SECRETS, field, json_body

routes = web.RouteTableDef()


def _days(body: dict) -> int:
    return field(body, "days", int, required=False, default=staff.DEFAULT_TOKEN_DAYS,
                 within=staff.TOKEN_DAYS)


def _staff(staff_id: str) -> str:
    return f"staff:{staff_id}"


@routes.get("/api/v1/staff/me")
@admits(*EVERYONE)
async def who_am_i(request: web.Request) -> web.Response:
    return web.json_response(caller(request).to_dict())


@routes.get("/api/v1/staff")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def list_staff(request: web.Request) -> web.Response:
    return web.json_response({"staff": [a.to_dict() for a in
                                        staff.list_accounts(request.app[DB])]})


@routes.post("/api/v1/staff")
@admits(R.ADMIN)
async def add_staff(request: web.Request) -> web.Response:
    body = await json_body(request)
    with audited(request, "staff.add") as change:
        account, token = staff.add(request.app[DB], request.app[SECRETS].staff_token_key,
                                   body.get("name"), body.get("role"), caller(request).id,
                                   request.app[CLOCK](), _days(body))
        change.subject, change.after = _staff(account.id), account.to_dict()
    return web.json_response({**account.to_dict(), "token": token}, status=201)


@routes.post("/api/v1/staff/{id}/revoke")
@admits(R.ADMIN, R.SECURITY)
async def revoke_staff(request: web.Request) -> web.Response:
    staff_id = request.match_info["id"]
    with audited(request, "staff.revoke", _staff(staff_id)) as change:
        change.before = staff.get(request.app[DB], staff_id).to_dict()
        change.after = staff.revoke(request.app[DB], staff_id, caller(request).id,
                                    request.app[CLOCK]()).to_dict()
    return web.json_response(change.after)


@routes.post("/api/v1/staff/{id}/token")
@admits(R.ADMIN)
async def reissue_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    staff_id = request.match_info["id"]
    with audited(request, "staff.token.reissue", _staff(staff_id)) as change:
        change.before = staff.get(request.app[DB], staff_id).to_dict()
        account, token = staff.reissue(request.app[DB], request.app[SECRETS].staff_token_key,
                                       staff_id, request.app[CLOCK](), _days(body))
        change.after = account.to_dict()  # never the token
    return web.json_response({**account.to_dict(), "token": token}, status=201)
