"""Fraud rules and their hits through the head-office API.

- GET/PUT /api/v1/fraud-rules: the programme's rules and thresholds (central.fraud_rules);
  security and admin change them, the auditor reads them. A PUT gives only what changes.
- GET /api/v1/fraud-hits, GET /api/v1/fraud-hits/{id}: hits with their evidence.
- POST /api/v1/fraud-hits/{id}/review: {"verdict": "confirmed" | "false-positive", "note"}.
- POST /api/v1/fraud-hits/{id}/hold: {"action": "release" | "confirm", "reason"}.
Every change is audited.
"""

from __future__ import annotations

from aiohttp import web

from central import fraud_hits, fraud_rules
from central.office_auth import actor, audited
from central.roles import Role as R
from central.roles import admits
from central.web_common import CLOCK, DB, ApiError, field, json_body, query_int

routes = web.RouteTableDef()


@routes.get("/api/v1/fraud-rules")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def get_rules(request: web.Request) -> web.Response:
    return web.json_response(fraud_rules.current(request.app[DB]))


@routes.put("/api/v1/fraud-rules")
@admits(R.ADMIN, R.SECURITY)
async def put_rules(request: web.Request) -> web.Response:
    body = await json_body(request)
    by = actor(request, body)
    conn = request.app[DB]
    with audited(request, "fraud-rules.set", "fraud-rules") as change:
        change.before = fraud_rules.current(conn)
        doc = fraud_rules.merged(change.before, {k: v for k, v in body.items()
                                                 if k != "actor"})
        fraud_rules.save(conn, doc, by, request.app[CLOCK]())
        change.after = doc
    return web.json_response(doc)


def _hit_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "field 'id' must be a fraud hit's number")
    return int(raw)


@routes.get("/api/v1/fraud-hits")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def list_hits(request: web.Request) -> web.Response:
    rule = request.query.get("rule")
    if rule is not None and rule not in fraud_rules.RULES:
        raise ApiError(400, f"query 'rule' must be one of {', '.join(fraud_rules.RULES)}")
    verdict = request.query.get("verdict")
    if verdict is not None and verdict not in (*fraud_hits.VERDICTS, "none"):
        raise ApiError(400, "query 'verdict' must be confirmed, false-positive or none")
    return web.json_response(fraud_hits.list_hits(
        request.app[DB], rule=rule, verdict=verdict,
        before=query_int(request, "before", None), limit=query_int(request, "limit", 100)))


@routes.get("/api/v1/fraud-hits/{id}")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def get_hit(request: web.Request) -> web.Response:
    return web.json_response(fraud_hits.get(request.app[DB], _hit_id(request)))


@routes.post("/api/v1/fraud-hits/{id}/review")
@admits(R.ADMIN, R.SECURITY)
async def review_hit(request: web.Request) -> web.Response:
    hit_id = _hit_id(request)
    body = await json_body(request)
    verdict = field(body, "verdict", str, max_len=32)
    note = field(body, "note", str, required=False, default="")
    by = actor(request, body)
    conn = request.app[DB]
    with audited(request, "fraud-hit.review", f"fraud-hit:{hit_id}") as change:
        before = fraud_hits.get(conn, hit_id)
        change.before = {"verdict": before["verdict"], "note": before["note"]}
        hit = fraud_hits.review(conn, hit_id, verdict, note, by, request.app[CLOCK]())
        change.after = {"verdict": verdict, "note": note}
    return web.json_response(hit)


@routes.post("/api/v1/fraud-hits/{id}/hold")
@admits(R.ADMIN, R.SECURITY)
async def decide_hold(request: web.Request) -> web.Response:
    hit_id = _hit_id(request)
    body = await json_body(request)
    action = field(body, "action", str, max_len=32)
    reason = field(body, "reason", str)
    by = actor(request, body)
    with audited(request, f"fraud-hit.hold.{action}"[:64], f"fraud-hit:{hit_id}") as change:
        hit = fraud_hits.decide_hold(request.app[DB], hit_id, action, reason, by,
                                     request.app[CLOCK]())
        change.before = {"hold_status": "held", "held_points": hit["held_points"]}
        change.after = {"hold_status": hit["hold_status"], "points": hit["points"],
                        "reason": reason}
    return web.json_response(hit)
