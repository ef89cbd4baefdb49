"""The local API the POS software calls: identify, price, confirm, return, status.

It listens on 127.0.0.1 only and answers only the POS software: a Host naming the loopback,
the POS secret, JSON bodies (agent.pos_auth). Card numbers the POS sends are tokenised on
arrival and never logged; answers carry at most the last four digits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from agent import customers, pos_requests
from agent.card_lookup import GuessingReport, Refresher, TypedLimit
from agent.central_client import CentralError
from agent.checkout import Checkout, CheckoutError
from agent.devices.printer import PrinterError
from agent.devices.reader import CardPresented, CardTokens
from agent.pos_auth import PosSecret, guard_middleware
from agent.pos_input import (
    CASHIER_HEADER,
    MAX_LINES,
    BadRequest,
    checked,
    parse_cashier,
    parse_lines,
    parse_return_lines,
)
from agent.presence import PRESENCE_TTL_S, SmsDesk, TooManyCodes
from agent.rules_cache import NoRuleSet
from protocol import app_codes, bounds, pars, phones
from protocol import presence as proofs
from protocol.card_keys import CardKeyError, CardKeyring
from protocol.cards import InvalidCardNumber, card_kind, normalize_card_number
from protocol.rules import InputError

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CARD_FRESH_S = 120.0  # a presented card identifies the customer for this long


class LastCard:
    """The card last presented at the reader, taken once by the next identification."""

    def __init__(self) -> None:
        self._card: CardPresented | None = None

    def presented(self, card: CardPresented) -> None:
        self._card = card

    def take(self) -> CardPresented | None:
        card, self._card = self._card, None
        if card is None or time.monotonic() - card.at > CARD_FRESH_S:
            return None
        return card


@dataclass
class Till:
    """Everything the handlers need, under one app key."""

    checkout: Checkout
    last_card: LastCard
    card_keys: CardTokens
    refresh_customers: Callable[[], Awaitable[None]]
    status: Callable[[], dict[str, Any]]
    close_shift: Callable[[], Awaitable[int]]
    loyalty_ranges: tuple[str, ...] = ()  # the programme's own card ranges: never "bank"
    typed_limit: TypedLimit = field(default_factory=TypedLimit)
    guessing: GuessingReport = field(default_factory=GuessingReport)
    # Tells the central of typed numbers refused for the limit (agent.service); no-op alone.
    report_guessing: Callable[[], None] = lambda: None
    # The card keys, from which the customers' app codes come (protocol.app_codes).
    app_keys: Callable[[], CardKeyring] = CardKeyring
    sms: SmsDesk | None = None  # SMS codes through the central; None: none at this till
    refresher: Refresher = field(init=False)

    def __post_init__(self) -> None:
        self.refresher = Refresher(self.refresh_customers)


TILL = web.AppKey("till", Till)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except (BadRequest, InputError, InvalidCardNumber, bounds.OutOfBounds) as e:
        return web.json_response({"error": str(e)}, status=400)
    except CheckoutError as e:
        return web.json_response({"error": str(e), **e.extra}, status=e.status)
    except NoRuleSet as e:
        return web.json_response({"error": str(e)}, status=503)
    except PrinterError as e:
        return web.json_response({"error": f"printer: {e.message}"}, status=503)
    except web.HTTPException as e:
        if e.status >= 400:
            return web.json_response({"error": e.reason}, status=e.status)
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error; see the agent's log"}, status=500)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        # Depth is checked on the raw bytes first: json.loads recurses per level.
        body = bounds.loads(await request.read())
    except bounds.BadJson as e:
        raise BadRequest(str(e)) from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _customer_id(body: dict[str, Any]) -> str | None:
    value = body.get("customer_id")
    if value is not None and not isinstance(value, str):
        raise BadRequest("customer_id must be a string or null")
    return None if value is None else checked(value, "customer_id")


def _idempotent(request: web.Request, body: dict[str, Any],
                endpoint: pos_requests.Endpoint) -> pos_requests.PosRequest | None:
    """The POS's idempotency key (header `Idempotency-Key` or body `idempotency_key`)."""
    return pos_requests.from_request(request.headers.get("Idempotency-Key"), body, endpoint)


@routes.get("/pos/v1/status")
async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[TILL].status())


@routes.post("/pos/v1/identify")
async def identify(request: web.Request) -> web.Response:
    """By a card number or a phone number the POS sends, or else by the card last presented
    at the reader."""
    till = request.app[TILL]
    body = await _body(request)
    number = body.get("card_number")
    if len({"card_number", "phone", "par"} & set(body)) > 1:
        raise BadRequest("send one of card_number, phone and par")
    if "phone" in body:
        return await _identify_by_phone(till, body["phone"])
    if "par" in body:
        return await _identify_by_par(till, body["par"])
    if number is not None:
        if not isinstance(number, str):
            raise BadRequest("card_number must be a string")
        if (refused := _typed_refusal(till)) is not None:
            return refused
        digits = normalize_card_number(number)
        tokens = [t for _, t in till.card_keys.tokens(digits)]
        last4 = digits[-4:]
        kind = card_kind(digits, till.loyalty_ranges)
    else:
        card = till.last_card.take()
        if card is None:
            raise CheckoutError(404, "no card presented at the reader")
        tokens, last4, kind = list(card.tokens), card.last4, card.kind
    db = till.checkout.db
    presence = till.checkout.presence
    presence.forget()  # a new identification: whoever was present before is not now
    customer_id = customers.by_tokens(db, tokens)
    if customer_id is None and await till.refresher.after_miss():
        # Perhaps enrolled at head office a moment ago: ask the central, within a budget
        # (agent.card_lookup); past it the till's cache answers.
        customer_id = customers.by_tokens(db, tokens)
    if customer_id is None:
        if number is not None:
            till.guessing.missed()
        raise CheckoutError(404, f"unknown card ****{last4}: not registered in the programme",
                            card_last4=last4)
    if (block := customers.blocked(db, customer_id, tokens)) is not None:
        # Refused as head office said, with its reason for the cashier; the customer is not
        # taken as present, so nothing is earned or spent on this identification.
        raise CheckoutError(403, block.message(last4), blocked=True, reason=block.reason,
                            card_blocked=block.card, card_last4=last4)
    view = customers.view(db, customer_id, till.checkout.clock())
    assert view is not None
    present = None
    if number is None:
        # The card itself, at the reader: the customer is here, and may spend points.
        present = presence.shown(customer_id, proofs.card(tokens)).method
    return web.json_response({
        "customer_id": customer_id, "card_last4": last4, "card_kind": kind, "tier": view.tier,
        "balance": {"available": view.available, "pending": view.pending},
        "present": present,
    })


def _typed_refusal(till: Till) -> web.Response | None:
    """429 if the till has taken its share of typed numbers (card or phone, one budget:
    agent.card_lookup), else None and the attempt is counted."""
    wait = till.typed_limit.retry_after()
    if wait is not None:
        till.guessing.refused()
        till.report_guessing()
        return web.json_response(
            {"error": f"too many typed card or phone numbers at this till: try again in"
                      f" {wait} s, or present the card at the reader", "retry_after": wait},
            status=429, headers={"Retry-After": str(wait)})
    till.typed_limit.take()
    return None


async def _identify_by_phone(till: Till, typed: Any) -> web.Response:
    """The customer whose phone the cashier typed. The number is put in E.164 and hashed
    under each card key (protocol.phones), as the central hashed the phone it sent: the
    till holds tokens, never numbers. Like a typed card number it is rate-limited and
    earns but does not spend (agent.presence): anyone can read a phone number out."""
    if not isinstance(typed, str):
        raise BadRequest("field 'phone' must be a string")
    if (refused := _typed_refusal(till)) is not None:
        return refused
    try:
        number = phones.e164(typed)
    except phones.InvalidPhone as e:
        raise BadRequest(str(e)) from None
    tokens = [t for _, t in phones.tokens(till.app_keys(), number)]
    return await _typed_answer(till, tokens, customers.by_phone_tokens, "phone", None,
                               "unknown phone number: no member of the programme has it")


async def _identify_by_par(till: Till, typed: Any) -> web.Response:
    """The customer whose bank card the payment terminal reported by its payment account
    reference (protocol.pars): no card number at all. Only the POS vouches for where it
    came from, so, like a typed number, it is rate-limited and earns but does not spend."""
    if not isinstance(typed, str):
        raise BadRequest("field 'par' must be a string")
    if (refused := _typed_refusal(till)) is not None:
        return refused
    try:
        par = pars.normalize_par(typed)
    except pars.InvalidPar as e:
        raise BadRequest(str(e)) from None
    tokens = [t for _, t in pars.tokens(till.app_keys(), par)]
    return await _typed_answer(till, tokens, customers.by_tokens, "par", par[-4:],
                               f"unknown payment account reference ...{par[-4:]}: no"
                               " member's card")


async def _typed_answer(till: Till, tokens: list[str],
                        find: Callable[[Any, list[str]], str | None], how: str,
                        last4: str | None, unknown: str) -> web.Response:
    """Who a typed phone or a PAR names: asked of the central on a miss within its budget,
    refused with the reason if blocked, never taken as present (it earns, not spends)."""
    db = till.checkout.db
    till.checkout.presence.forget()  # a new identification: whoever was present is not now
    customer_id = find(db, tokens)
    if customer_id is None and await till.refresher.after_miss():
        customer_id = find(db, tokens)
    if customer_id is None:
        till.guessing.missed()
        raise CheckoutError(404, unknown)
    if (block := customers.blocked(db, customer_id, tokens)) is not None:
        raise CheckoutError(403, block.message(last4), blocked=True, reason=block.reason,
                            card_blocked=block.card)
    view = customers.view(db, customer_id, till.checkout.clock())
    assert view is not None
    return web.json_response({
        "customer_id": customer_id, "card_last4": last4, "card_kind": how if last4 else None,
        "identified_by": how, "tier": view.tier,
        "balance": {"available": view.available, "pending": view.pending},
        "present": None,
    })


@routes.post("/pos/v1/price")
async def price(request: web.Request) -> web.Response:
    body = await _body(request)
    till = request.app[TILL]
    return web.json_response(till.checkout.price(parse_lines(body.get("lines")),
                                                 _customer_id(body)))


@routes.post("/pos/v1/receipts")
async def confirm(request: web.Request) -> web.Response:
    body = await _body(request)
    redeem = body.get("redeem", 0)
    if isinstance(redeem, bool) or not isinstance(redeem, int) or redeem < 0:
        raise BadRequest("redeem must be a non-negative integer of points")
    bounds.POINTS.check(redeem, "redeem")
    payment = body.get("payment", "cash")
    if payment not in ("cash", "card"):
        raise BadRequest("payment must be 'cash' or 'card'")
    if "payment" in body and body.get("payments") is not None:
        raise BadRequest("send payments (the split) or payment, not both")
    cashier = parse_cashier(request.headers.get(CASHIER_HEADER), body)
    # The split is checked against what is to pay once the receipt is settled.
    outcome = await request.app[TILL].checkout.confirm(
        parse_lines(body.get("lines")), _customer_id(body), redeem, payment,
        body.get("payments"), request=_idempotent(request, body, "receipts"), cashier=cashier)
    return web.json_response(outcome.to_dict(), status=201)


@routes.post("/pos/v1/returns")
async def return_goods(request: web.Request) -> web.Response:
    body = await _body(request)
    receipt_id = body.get("receipt_id")
    if not isinstance(receipt_id, str) or not receipt_id:
        raise BadRequest("receipt_id must be the id of the original sale")
    checked(receipt_id, "receipt_id")
    checkout = request.app[TILL].checkout
    # The sale may be another till's: its lines are checked against the sale itself.
    returning = parse_return_lines(body.get("lines"), MAX_LINES)
    cashier = parse_cashier(request.headers.get(CASHIER_HEADER), body)
    outcome = await checkout.return_goods(receipt_id, returning,
                                          request=_idempotent(request, body, "returns"),
                                          cashier=cashier)
    return web.json_response(outcome.to_dict(), status=201)


@routes.get("/pos/v1/pending")
async def pending(request: web.Request) -> web.Response:
    return web.json_response({"pending": request.app[TILL].checkout.pending()})


@routes.post("/pos/v1/pending/{receipt_id}/resume")
async def resume(request: web.Request) -> web.Response:
    outcome = await request.app[TILL].checkout.resume(request.match_info["receipt_id"])
    return web.json_response(outcome.to_dict(), status=201)


@routes.post("/pos/v1/pending/{receipt_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    done = await request.app[TILL].checkout.cancel(request.match_info["receipt_id"])
    return web.json_response({"done": done})


@routes.post("/pos/v1/printer/continue")
async def continue_printing(request: web.Request) -> web.Response:
    """After the cashier put in a new roll: the printer goes on with what it held."""
    await request.app[TILL].checkout.printer.continue_printing()
    return web.json_response({"printer": vars(request.app[TILL].checkout.printer.state())})


@routes.post("/pos/v1/pending/reconcile")
async def reconcile(request: web.Request) -> web.Response:
    return web.json_response({"done": await request.app[TILL].checkout.reconcile()})


@routes.post("/pos/v1/shift/close")
async def close_shift(request: web.Request) -> web.Response:
    return web.json_response({"z_report_document": await request.app[TILL].close_shift()})


# -- the customer's presence (agent.presence) ----------------------------------------------

def _present_customer(till: Till, body: dict[str, Any]) -> str:
    customer_id = _customer_id(body)
    if not customer_id:
        raise BadRequest("customer_id is required: the customer identified for this checkout")
    if customers.view(till.checkout.db, customer_id) is None:
        raise CheckoutError(404, "customer is not known to this till")
    if (block := customers.blocked(till.checkout.db, customer_id)) is not None:
        # no codes for a customer who may neither earn nor spend here
        raise CheckoutError(403, block.message(), blocked=True, reason=block.reason)
    return customer_id


def _too_many(e: TooManyCodes) -> web.Response:
    return web.json_response({"error": str(e), "retry_after": e.retry_after}, status=429,
                             headers={"Retry-After": str(e.retry_after)})


@routes.post("/pos/v1/presence/code")
async def presence_code(request: web.Request) -> web.Response:
    """The one-time code the customer shows (their app) or reads out (an SMS): with a right
    one the customer is present for this checkout, and the next receipt may spend points."""
    till = request.app[TILL]
    body = await _body(request)
    customer_id = _present_customer(till, body)
    try:
        code = app_codes.check_format(body.get("code"))
    except app_codes.BadCode as e:
        raise BadRequest(f"code: {e}") from None
    presence = till.checkout.presence
    try:
        presence.may_try(customer_id)
    except TooManyCodes as e:
        return _too_many(e)
    proof = presence.app_code(till.app_keys(), customer_id, code, till.checkout.clock())
    if proof is None and (challenge := presence.sms_sent.get(customer_id)):
        proof = await _sms_code(till, customer_id, challenge, code)
    if proof is None:
        presence.wrong(customer_id)
        raise CheckoutError(422, "wrong or used code: ask for the code the app shows now, or"
                                 " present the card at the reader")
    present = presence.shown(customer_id, proof)
    return web.json_response({"customer_id": customer_id, "present": present.method,
                              "expires_in": int(PRESENCE_TTL_S)})


async def _sms_code(till: Till, customer_id: str, challenge: str,
                    code: str) -> dict[str, Any] | None:
    """The proof for the SMS code the central sent, if it is right (the central checks it
    and counts the tries); None if wrong."""
    if till.sms is None:
        return None
    try:
        await till.sms.check(challenge, code)
    except CentralError as e:
        if e.status == 422:
            return None
        till.checkout.presence.sms_sent.pop(customer_id, None)
        if e.status in (404, 410):
            raise CheckoutError(410, _central_says(e) + ": send a new SMS code") from None
        raise CheckoutError(503, "the central cannot check the SMS code now: use the app's"
                                 f" code or the card ({e})") from None
    till.checkout.presence.sms_sent.pop(customer_id, None)
    return proofs.sms(challenge)


def _central_says(e: CentralError) -> str:
    return str(e).split(": ", 1)[-1]


@routes.post("/pos/v1/presence/sms")
async def presence_sms(request: web.Request) -> web.Response:
    """Online only: the central sends the customer a code by SMS; the POS then sends the
    code the customer reads out to /pos/v1/presence/code."""
    till = request.app[TILL]
    body = await _body(request)
    customer_id = _present_customer(till, body)
    if till.sms is None:
        raise CheckoutError(503, "SMS codes need the central: use the app's code or the card")
    try:
        till.checkout.presence.may_try(customer_id)
    except TooManyCodes as e:
        return _too_many(e)
    try:
        sent = await till.sms.send(customer_id)
    except CentralError as e:
        if e.status in (404, 409, 429):
            raise CheckoutError(e.status, _central_says(e)) from None
        raise CheckoutError(503, "the central cannot be reached to send an SMS code: use the"
                                 f" app's code or the card ({e})") from None
    till.checkout.presence.sms_sent[customer_id] = sent["challenge"]
    return web.json_response({"customer_id": customer_id, "sent": True,
                              "expires_at": sent["expires_at"]})


@routes.post("/pos/v1/cards/relink")
async def relink_card(request: web.Request) -> web.Response:
    """Online only: a card whose key retired, linked again to the customer of this checkout.
    The customer proves the phone on the account first (/pos/v1/presence/sms, then
    /pos/v1/presence/code with the SMS code), then presents the card at the reader."""
    till = request.app[TILL]
    body = await _body(request)
    customer_id = _present_customer(till, body)
    if till.sms is None:
        raise CheckoutError(503, "linking a card again needs the central")
    present = till.checkout.presence.of(customer_id)
    if present is None or present.method != "sms":
        raise CheckoutError(409, "the customer proves the phone on the account first: an SMS"
                                 " code (/pos/v1/presence/sms, then /pos/v1/presence/code)")
    card = till.last_card.take()
    if card is None:
        raise CheckoutError(404, "no card presented at the reader")
    if customers.by_tokens(till.checkout.db, list(card.tokens)) is not None:
        raise CheckoutError(409, f"card ****{card.last4} is linked already: identify it")
    try:
        version = till.app_keys().newest.version  # the key the reader's newest token is under
        await till.sms.relink_card(present.proof["challenge"], card.token, version,
                                   card.last4)
    except CardKeyError as e:
        raise CheckoutError(503, str(e)) from None
    except CentralError as e:
        if e.status in (404, 409, 410):
            raise CheckoutError(e.status, _central_says(e)) from None
        raise CheckoutError(503, f"the central cannot link the card now ({e})") from None
    # The SMS code is used up; the card itself, just presented, keeps the customer present.
    till.checkout.presence.shown(customer_id, proofs.card(list(card.tokens)))
    await till.refresh_customers()  # the central sends the card with the customer
    return web.json_response({"customer_id": customer_id, "card_last4": card.last4,
                              "linked": True, "present": "card"})


# A POS request slower than this is logged: the cashier waited, store IT should see why.
SLOW_REQUEST_S = 0.5


class SlowRequestLog(AbstractAccessLogger):
    """The POS API's access log: only requests that failed on the till's side (5xx) or kept
    the POS waiting. A line for every request (aiohttp's default, at INFO) cost each
    identification and price a good part of its time, for a log nobody reads: the
    journal is the record of what was sold."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        if response.status >= 500 or time > SLOW_REQUEST_S:
            self.logger.warning("%s %s: %d in %.3f s", request.method, request.path,
                                response.status, time)


def make_app(till: Till, secret: PosSecret) -> web.Application:
    app = web.Application(middlewares=[guard_middleware(secret), errors_middleware],
                          client_max_size=1024 * 1024)
    app[TILL] = till
    app.router.add_routes(routes)
    return app


def make_runner(till: Till, secret: PosSecret) -> web.AppRunner:
    """The POS API as the agent serves it, with its access log."""
    return web.AppRunner(make_app(till, secret), access_log_class=SlowRequestLog)


__all__ = ["TILL", "LastCard", "SlowRequestLog", "Till", "make_app", "make_runner"]
