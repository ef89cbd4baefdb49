"""The channel API: the web shop and the app price, confirm and return orders here.

`/channel/v1/...`, not under `/api/` (head office's): a channel authenticates with its own
token (`Authorization: Bearer <channel id>:<secret>`, made by an admin through
`POST /api/v1/channels`), and sees and acts on its own orders only. The domain is
central.channel_orders; the shapes, for the OpenAPI document:

- `POST /channel/v1/price` {customer_id?, lines: [{sku, qty, price, category?, brand?,
  flags?}], redeem?} → the settlement (lines, total_amount, discount, redeemed, to_pay,
  earned, lots, campaigns) with max_redeemable, redeem_reason and the balance. Moves nothing.
- `POST /channel/v1/orders/{order_id}/confirm` (the same body) → 200 {order_id, receipt_id,
  status, the settlement, balance}; a repeat with the same body answers the same, another
  body 409; a spend the rules or the balance do not allow 409.
- `POST /channel/v1/orders/{order_id}/returns/{return_id}` {lines: [{index, qty}]} → 200
  {order_id, return_id, receipt_id, money, clawback, refund, complete, returned, balance};
  idempotent like confirm; beyond what was sold and returned before 409.
- `GET /channel/v1/orders/{order_id}` → the confirm's answer with `returns`.

Quantities are in thousandths, money in kopecks, points whole; errors are
`{"error": "<message naming the field>"}`.
"""

from __future__ import annotations

from aiohttp import web

from central import channel_orders, channels
from central.channels import Channel
from central.office_auth import audited, caller
from central.roles import Role as R
from central.roles import admits
from central.web_common import (
    CLOCK,
    DB,
    SECRETS,
    THROTTLE,
    ApiError,
    failed_auth,
    field,
    json_body,
    source,
)

routes = web.RouteTableDef()


# -- head office: the channels' credentials ----------------------------------------------

@routes.post("/api/v1/channels")
@admits(R.ADMIN)
async def add_channel(request: web.Request) -> web.Response:
    """{name, kind: web|app, store: the store id the rule set knows the channel by} → 201
    {channel, token}: the token is shown this once."""
    body = await json_body(request)
    name, kind, store = (field(body, "name", str), field(body, "kind", str),
                         field(body, "store", str))
    with audited(request, "channel.add", f"channel:{name}") as change:
        made, token = channels.add(request.app[DB], request.app[SECRETS].staff_token_key,
                                   name, kind, store, caller(request).id, request.app[CLOCK]())
        change.after = made.to_dict()
    return web.json_response({"channel": made.to_dict(), "token": token}, status=201)


@routes.get("/api/v1/channels")
@admits(R.ADMIN)
async def list_channels(request: web.Request) -> web.Response:
    return web.json_response(
        {"channels": [c.to_dict() for c in channels.list_channels(request.app[DB])]})


@routes.post("/api/v1/channels/{id}/revoke")
@admits(R.ADMIN)
async def revoke_channel(request: web.Request) -> web.Response:
    channel_id = request.match_info["id"]
    with audited(request, "channel.revoke", f"channel:{channel_id}") as change:
        change.before = channels.get(request.app[DB], channel_id).to_dict()
        done = channels.revoke(request.app[DB], channel_id, request.app[CLOCK]())
        change.after = done.to_dict()
    return web.json_response(done.to_dict())


# -- the channels themselves ---------------------------------------------------------------

def authenticated(request: web.Request) -> Channel:
    """The channel the bearer token proves; 401 (counted per source, as head office's are)
    otherwise, 429 to a source that guessed too often."""
    given = request.headers.get("Authorization", "")
    token = given[len("Bearer "):].strip() if given.startswith("Bearer ") else ""
    named = token.partition(":")[0][:64] or None
    src, throttle = source(request), request.app[THROTTLE]
    if throttle.retry_after(src, named) is not None:
        raise ApiError(429, "too many failed authentications; try again later")
    channel = (channels.authenticate(request.app[DB], request.app[SECRETS].staff_token_key,
                                     token) if token else None)
    if channel is None:
        throttle.failed(src, named)
        failed_auth(request, "wrong or revoked channel token")
        raise ApiError(401, "the channel API needs 'Authorization: Bearer <channel token>'"
                            " (valid, not revoked)")
    return channel


@routes.post("/channel/v1/price")
async def price(request: web.Request) -> web.Response:
    channel = authenticated(request)
    body = await json_body(request)
    return web.json_response(channel_orders.price(request.app[DB], channel, body,
                                                  request.app[CLOCK]()))


@routes.post("/channel/v1/orders/{order_id}/confirm")
async def confirm(request: web.Request) -> web.Response:
    channel = authenticated(request)
    body = await json_body(request)
    return web.json_response(channel_orders.confirm(
        request.app[DB], channel, request.match_info["order_id"], body,
        request.app[CLOCK]()))


@routes.post("/channel/v1/orders/{order_id}/returns/{return_id}")
async def return_order(request: web.Request) -> web.Response:
    channel = authenticated(request)
    body = await json_body(request)
    return web.json_response(channel_orders.return_order(
        request.app[DB], channel, request.match_info["order_id"],
        request.match_info["return_id"], body, request.app[CLOCK]()))


@routes.get("/channel/v1/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    channel = authenticated(request)
    return web.json_response(channel_orders.order(request.app[DB], channel,
                                                  request.match_info["order_id"]))
