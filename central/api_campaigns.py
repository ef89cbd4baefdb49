"""Campaigns as resources: /api/v1/campaigns (central.campaigns, central.campaign_publish).

A campaign is the rule set's campaign object (`id`, `name`, `effect`, `when`, ...) plus its
own dates (`from`, `to`) and status (draft, live, paused, ended). Every change names the
version it read, as `If-Match: "<version>"` or a `version` field; a stale one is 409.
Marketing and admins change them; analysts, support, security and auditors read them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from aiohttp import web

from central import campaign_dry_run, campaign_figures, campaign_publish, campaign_roi, campaigns
from central.campaign_publish import summary
from central.office_auth import audited, caller
from central.roles import Role as R
from central.roles import admits
from central.web_common import CLOCK, DB, ApiError, json_body, query_int
from protocol import bounds

routes = web.RouteTableDef()
CHANGERS = (R.ADMIN, R.MARKETING)
READERS = (R.ADMIN, R.MARKETING, R.ANALYST, R.SUPPORT, R.SECURITY, R.AUDITOR)
# A dry run prices receipts and shows sums; it names no customer.
DRY_RUNNERS = (R.ADMIN, R.MARKETING, R.ANALYST)
# ROI shows margins, so cost prices in aggregate: those who read the cost feed.
ROI_READERS = (R.ADMIN, R.MARKETING, R.ANALYST)
MAX_ROI_DAYS = 3660
PAGE = bounds.IntRange(1, campaigns.MAX_PAGE, "campaigns")
VERSION = bounds.IntRange(1, bounds.MAX_COUNTER, "campaign version")


def _subject(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def _answer(c: campaigns.Campaign, now: datetime, status: int = 200) -> web.Response:
    return web.json_response(c.to_dict(now), status=status,
                             headers={"ETag": f'"{c.version}"'})


def _version(request: web.Request, body: dict[str, Any]) -> int:
    """The version the change was made against: If-Match, else the body's `version`."""
    given = request.headers.get("If-Match")
    if given is not None:
        text = given.strip().removeprefix("W/").strip('"')
        if not bounds.ascii_digits(text) or not 0 < len(text) <= 16:
            raise ApiError(400, "header 'If-Match' must be the campaign's ETag, e.g. \"3\"")
        return VERSION.check(int(text), "If-Match")
    if body.get("version") is None:
        raise ApiError(428, "field 'version' (or header 'If-Match') is required: the version"
                            " of the campaign the change was made against")
    return VERSION.check(body["version"], "version")


def _text_query(request: web.Request, name: str, choices: tuple[str, ...] = ()) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    bounds.text(value, name, max_len=100)
    if not value:
        raise ApiError(400, f"query '{name}' must not be empty")
    if choices and value not in choices:
        raise ApiError(400, f"query '{name}' must be one of {', '.join(choices)}")
    return value


def _moment_query(request: web.Request, name: str) -> datetime | None:
    text = campaign_publish.moment(dict(request.query), name)
    return None if text is None else datetime.fromisoformat(text)


@routes.get("/api/v1/campaigns")
@admits(*READERS)
async def list_campaigns(request: web.Request) -> web.Response:
    conn, now = request.app[DB], request.app[CLOCK]()
    filters = campaigns.Filters(
        status=_text_query(request, "status", campaigns.STATUS_FILTERS),
        kind=_text_query(request, "kind"), store=_text_query(request, "store"),
        channel=_text_query(request, "channel"), text=_text_query(request, "q"),
        active_at=_moment_query(request, "active_at"))
    rows, cursor = campaigns.listing(
        conn, filters, now, cursor=_text_query(request, "cursor"),
        limit=query_int(request, "limit", campaigns.DEFAULT_PAGE, within=PAGE))
    return web.json_response({"campaigns": [c.to_dict(now) for c in rows],
                              "next_cursor": cursor})


@routes.post("/api/v1/campaigns")
@admits(*CHANGERS)
async def create_campaign(request: web.Request) -> web.Response:
    body = await json_body(request)
    rule = {k: v for k, v in body.items() if k not in ("status", "from", "to")}
    status = body.get("status", campaigns.DRAFT)
    campaign_publish.check_id(rule.get("id"))
    now = request.app[CLOCK]()
    with audited(request, "campaign.create", _subject(rule["id"])) as change:
        made = campaign_publish.create(
            request.app[DB], rule, status, campaign_publish.moment(body, "from"),
            campaign_publish.moment(body, "to"), caller(request).id, now)
        change.after = summary(made)
    return _answer(made, now, 201)


def _found(request: web.Request) -> campaigns.Campaign:
    found = campaigns.get(request.app[DB], request.match_info["id"])
    if found is None:
        raise ApiError(404, f"no campaign {request.match_info['id']!r}")
    return found


@routes.get("/api/v1/campaigns/{id}")
@admits(*READERS)
async def get_campaign(request: web.Request) -> web.Response:
    return _answer(_found(request), request.app[CLOCK]())


@routes.patch("/api/v1/campaigns/{id}")
@admits(*CHANGERS)
async def edit_campaign(request: web.Request) -> web.Response:
    body = await json_body(request)
    version = _version(request, body)
    patch = {k: v for k, v in body.items() if k != "version"}
    if not patch:
        raise ApiError(400, "give at least one field of the campaign to change")
    cid, now = request.match_info["id"], request.app[CLOCK]()
    with audited(request, "campaign.edit", _subject(cid)) as change:
        before, after = campaign_publish.edit(request.app[DB], cid, version, patch,
                                              caller(request).id, now)
        change.before, change.after = summary(before), summary(after)
    return _answer(after, now)


async def _status(request: web.Request, action: str) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    version = _version(request, body)
    if action != "schedule":
        extra = set(body) - {"version"}
        if extra:
            raise ApiError(400, f"field {sorted(extra)[0]!r} is not taken by {action}")
    cid, now = request.match_info["id"], request.app[CLOCK]()
    with audited(request, f"campaign.{action}", _subject(cid)) as change:
        before, after = campaign_publish.change_status(
            request.app[DB], cid, version, action, caller(request).id, now,
            campaign_publish.moment(body, "from"), campaign_publish.moment(body, "to"))
        change.before, change.after = summary(before), summary(after)
    return _answer(after, now)


@routes.post("/api/v1/campaigns/{id}/schedule")
@admits(*CHANGERS)
async def schedule_campaign(request: web.Request) -> web.Response:
    return await _status(request, "schedule")


@routes.post("/api/v1/campaigns/{id}/pause")
@admits(*CHANGERS)
async def pause_campaign(request: web.Request) -> web.Response:
    return await _status(request, "pause")


@routes.post("/api/v1/campaigns/{id}/resume")
@admits(*CHANGERS)
async def resume_campaign(request: web.Request) -> web.Response:
    return await _status(request, "resume")


@routes.post("/api/v1/campaigns/{id}/end")
@admits(*CHANGERS)
async def end_campaign(request: web.Request) -> web.Response:
    return await _status(request, "end")


@routes.post("/api/v1/campaigns/dry-run")
@admits(*DRY_RUNNERS)
async def dry_run_draft(request: web.Request) -> web.Response:
    body = await json_body(request)
    rule = body.get("campaign")
    if not isinstance(rule, dict):
        raise ApiError(400, "field 'campaign' is required: the campaign to try, as an object")
    campaign_publish.check_id(rule.get("id"))
    conn = request.app[DB]
    starts, ends = campaign_publish.moment(body, "from"), campaign_publish.moment(body, "to")
    campaign_publish.check_rule(conn, rule, starts, ends)
    run = campaign_dry_run.DryRun.read(body)
    return web.json_response(campaign_dry_run.run(
        conn, campaigns.dated(rule, starts, ends), run, request.app[CLOCK]()))


@routes.post("/api/v1/campaigns/{id}/dry-run")
@admits(*DRY_RUNNERS)
async def dry_run_change(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    conn, current = request.app[DB], _found(request)
    change = {} if body.get("change") is None else body["change"]
    if not isinstance(change, dict):
        raise ApiError(400, "field 'change' must be an object: the fields to change")
    if "id" in change and change["id"] != current.id:
        raise ApiError(400, "field 'change.id' cannot change")
    rule = campaign_publish.merged(current.rule, {k: v for k, v in change.items() if k != "id"},
                                   named="change.")
    starts = campaign_publish.moment(body, "from") if "from" in body else current.starts_at
    ends = campaign_publish.moment(body, "to") if "to" in body else current.ends_at
    campaign_publish.check_rule(conn, rule, starts, ends)
    run = campaign_dry_run.DryRun.read(body)
    return web.json_response(campaign_dry_run.run(
        conn, campaigns.dated(rule, starts, ends), run, request.app[CLOCK]()))


@routes.get("/api/v1/campaigns/{id}/figures")
@admits(*READERS)
async def campaign_figures_of(request: web.Request) -> web.Response:
    found = _found(request)
    conn = request.app[DB]
    return web.json_response({**campaign_figures.figures(conn, found.id),
                              # members' receipts treated and held out (campaign ROI)
                              "receipts_by_group": campaign_roi.group_receipts(conn, found.id)})


def _day(request: web.Request, name: str) -> date:
    value = request.query.get(name)
    if value is None:
        raise ApiError(400, f"query '{name}' is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"query '{name}' must be a day, YYYY-MM-DD") from None


@routes.get("/api/v1/campaigns/{id}/roi")
@admits(*ROI_READERS)
async def campaign_roi_of(request: web.Request) -> web.Response:
    found = _found(request)
    start, end = _day(request, "from"), _day(request, "to")
    if end < start:
        raise ApiError(400, "query 'to' is before 'from'")
    if (end - start).days > MAX_ROI_DAYS:
        raise ApiError(400, f"query 'from'..'to' spans more than {MAX_ROI_DAYS} days")
    return web.json_response(campaign_roi.roi(request.app[DB], found.id, start, end))
