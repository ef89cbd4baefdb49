"""The head-office API for finding customers (central.customer_search) and blocking them or
their cards (central.blocks).

`GET /api/v1/customers` takes its filters in the query string; a whole card number is
refused there (URLs end up in access logs and proxies' logs) and goes in the body of
`POST /api/v1/customers/search`, which takes every filter. Both are reads of personal
data, so each is audited: which filters were used and which customers came back, never
the values searched for.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from central import blocks, customer_search, customers
from central.customer_search import CustomerQuery
from central.office_auth import audited
from central.roles import Role as R
from central.roles import admits
from central.web_common import CLOCK, DB, SECRETS, ApiError, field, json_body, query_int
from protocol import bounds, phones
from protocol.cards import InvalidCardNumber
from protocol.pars import InvalidPar

routes = web.RouteTableDef()
PAGE = bounds.IntRange(1, customer_search.MAX_PAGE, "customers")
MAX_NAME = 200
# `after` carries a name's key in a name search's cursor (central.customer_search)
_TEXT_FILTERS = {"id": 64, "phone": phones.MAX_TYPED, "name": MAX_NAME, "after": 2048}


@routes.get("/api/v1/customers")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY)
async def list_customers(request: web.Request) -> web.Response:
    """Filters `id`, `card` (its last four digits), `phone`, `name`; paging `after`
    (`next_after` of the page before) and `limit` (50, at most 200)."""
    q = request.query
    unknown = set(q) - {*_TEXT_FILTERS, "card", "limit"}
    if unknown:
        raise ApiError(400, f"unknown filter {sorted(unknown)[0]!r}; filters: id, card, phone,"
                            " name, after, limit")
    texts = {k: bounds.text(q[k], k, max_len=n) for k, n in _TEXT_FILTERS.items() if k in q}
    card = q.get("card")
    if card is not None and not (len(card) == 4 and bounds.ascii_digits(card)):
        raise ApiError(400, "field 'card' must be the card's last four digits here; send a"
                            " whole card number as 'card_number' to POST"
                            " /api/v1/customers/search, never in a URL")
    query = CustomerQuery(last4=card, limit=query_int(request, "limit", 50, PAGE), **texts)
    return await _search(request, query)


@routes.post("/api/v1/customers/search")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY)
async def search_customers(request: web.Request) -> web.Response:
    """As GET /api/v1/customers, with the filters in the body, where a whole card number
    (`card_number`) may go too."""
    body = await json_body(request)
    unknown = set(body) - {*_TEXT_FILTERS, "card", "card_number", "limit"}
    if unknown:
        raise ApiError(400, f"unknown field {sorted(unknown)[0]!r}; fields: id, card,"
                            " card_number, phone, name, after, limit")
    texts = {k: field(body, k, str, required=False, max_len=n) for k, n in _TEXT_FILTERS.items()}
    card = field(body, "card", str, required=False, max_len=4)
    if card is not None and not (len(card) == 4 and bounds.ascii_digits(card)):
        raise ApiError(400, "field 'card' must be the card's last four digits")
    query = CustomerQuery(
        last4=card, card_number=field(body, "card_number", str, required=False, max_len=64),
        limit=field(body, "limit", int, required=False, default=50, within=PAGE), **texts)
    return await _search(request, query)


async def _search(request: web.Request, query: CustomerQuery) -> web.Response:
    try:
        with audited(request, "customer.search", "customers") as change:
            found: dict[str, Any] = customer_search.search(
                request.app[DB], request.app[SECRETS].card_keys, query)
            change.after = {"filters": query.filters(),
                            "found": [c["id"] for c in found["customers"]]}
    except InvalidCardNumber as e:
        raise ApiError(400, str(e)) from None
    except phones.InvalidPhone as e:
        raise ApiError(400, str(e)) from None
    return web.json_response(found)


def _card(body: dict[str, Any]) -> dict[str, str | None] | None:
    """The card a block names, if any: `card_number`, or `card` (its last four digits)."""
    number = field(body, "card_number", str, required=False, max_len=64)
    last4 = field(body, "card", str, required=False, max_len=4)
    # letters too: a card known by its payment account reference ends as the PAR does
    if last4 is not None and not (len(last4) == 4 and last4.isascii() and last4.isalnum()):
        raise ApiError(400, "field 'card' must be the card's last four characters")
    if number is None and last4 is None:
        return None
    return {"card_number": number, "last4": None if last4 is None else last4.upper()}


async def _set_block(request: web.Request, blocked: bool) -> web.Response:
    body = await json_body(request)
    unknown = set(body) - {"reason", "card", "card_number", "actor"}
    if unknown:
        raise ApiError(400, f"unknown field {sorted(unknown)[0]!r}; fields: reason, and to"
                            " name one card: card (last four digits) or card_number")
    cid = request.match_info["id"]
    card = _card(body)
    verb = "block" if blocked else "unblock"
    action = f"customer.card.{verb}" if card else f"customer.{verb}"
    conn, now = request.app[DB], request.app[CLOCK]()
    try:
        with audited(request, action, f"customer:{cid}") as change:
            if card is None:
                done = blocks.set_customer(conn, cid, body.get("reason"), now, blocked=blocked)
                change.after = done
            else:
                done = blocks.set_card(conn, request.app[SECRETS].card_keys, cid, card,
                                       body.get("reason"), now, blocked=blocked)
                # "last4": the audit log keeps that a card was named, not which
                change.after = {"blocked": blocked, "reason": done["reason"],
                                "last4": done["card"]}
    except InvalidCardNumber as e:
        raise ApiError(400, str(e)) from None
    return web.json_response({"customer_id": cid, **done})


@routes.post("/api/v1/customers/{id}/block")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY)
async def block(request: web.Request) -> web.Response:
    """Block the customer, or one card (`card` or `card_number`), with a `reason` the
    cashier is shown; tills refuse them after their next sync."""
    return await _set_block(request, True)


@routes.post("/api/v1/customers/{id}/unblock")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY)
async def unblock(request: web.Request) -> web.Response:
    """Lift a block of the customer or of one card, with a `reason`."""
    return await _set_block(request, False)


@routes.delete("/api/v1/customers/{id}/cards/{card}")
@admits(R.ADMIN, R.SUPPORT)
async def unlink_card(request: web.Request) -> web.Response:
    """Remove a card from the customer: `{card}` its last four characters (never the whole
    number in a URL); where two cards end alike, the body names it: `card_number` or `par`.
    Tills drop it with their next delta."""
    body = await json_body(request) if request.can_read_body else {}
    unknown = set(body) - {"card_number", "par", "actor"}
    if unknown:
        raise ApiError(400, f"unknown field {sorted(unknown)[0]!r}; fields: card_number, par")
    last4 = request.match_info["card"]
    if len(last4) != 4 or not last4.isascii() or not last4.isalnum():
        raise ApiError(400, "field 'card' must be the card's last four characters, e.g."
                            " /cards/0012; a whole card number never goes in a URL")
    cid = request.match_info["id"]
    number = field(body, "card_number", str, required=False, max_len=64)
    par = field(body, "par", str, required=False, max_len=64)
    try:
        with audited(request, "customer.card.unlink", f"customer:{cid}") as change:
            change.before = {"cards": customers.read(request.app[DB], cid)["cards"]}
            change.after = customers.unlink_card(request.app[DB],
                                                 request.app[SECRETS].card_keys, cid,
                                                 last4.upper(), number, par)
    except (InvalidCardNumber, InvalidPar) as e:
        raise ApiError(400, str(e)) from None
    return web.json_response(change.after)
