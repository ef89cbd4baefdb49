"""The product cost feed through the head-office API (central.product_costs).

- PUT /api/v1/product-costs: the whole feed, as CSV (`Content-Type: text/csv`, header
  `sku,cost`) or JSON (`{"costs": [{"sku", "cost"}]}`); costs in kopecks. Admin and
  marketing upload it; the upload is audited as its count and digest.
- GET /api/v1/product-costs: what the feed holds (count, digest, when and by whom), and a
  page of its rows (`after`, `limit`); admin, marketing and analysts read it.
"""

from __future__ import annotations

from aiohttp import web

from central import product_costs
from central.office_auth import audited, caller
from central.roles import Role as R
from central.roles import admits
from central.web_common import CLOCK, DB, json_body, query_int
from protocol import bounds

routes = web.RouteTableDef()
PAGE = bounds.IntRange(1, 1000, "rows")


@routes.put("/api/v1/product-costs")
@admits(R.ADMIN, R.MARKETING)
async def put_costs(request: web.Request) -> web.Response:
    if request.content_type in ("text/csv", "application/csv"):
        feed = product_costs.parse_csv(await request.read())
    else:
        body = await json_body(request)
        feed = product_costs.parse_json(body)
    conn = request.app[DB]
    with audited(request, "product-costs.set", "product-costs") as change:
        before = product_costs.current(conn)
        change.before = {"skus": before["skus"], "digest": before["digest"]}
        after = product_costs.replace(conn, feed, caller(request).id, request.app[CLOCK]())
        change.after = feed.summary()
    return web.json_response(after)


@routes.get("/api/v1/product-costs")
@admits(R.ADMIN, R.MARKETING, R.ANALYST)
async def get_costs(request: web.Request) -> web.Response:
    conn = request.app[DB]
    after = request.query.get("after", "")
    bounds.text(after, "after")
    limit = query_int(request, "limit", 100, PAGE)
    return web.json_response({**product_costs.current(conn),
                              "costs": product_costs.page(conn, after, limit)})
