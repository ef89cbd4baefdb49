"""The customer's own account: a customer-facing API under `/account/v1/` and the page at
`/account` that uses it (central/web/account/, shipped in the package, nothing from a CDN).

Not under `/api/`, which is staff-only (central.office_auth): the caller here is a customer
who signed in with a one-time code (central.account_sign_in), and every route after sign-in
reads and changes that customer's own data only: the customer comes from the session, never
from the URL or the body, so one customer cannot name another's.

Requests and answers (JSON; errors {"error": "..."} naming the field):
- POST /account/v1/sign-in/code  {"phone": str} | {"email": str}
    -> 202 {"challenge", "channel", "expires_at", "resend_after"}; 429 + Retry-After
- POST /account/v1/sign-in  {"challenge": str, "code": str, "session"?: "cookie"|"bearer"}
    -> 200 {"customer_id", "expires_at", "token"? (bearer only)}; HttpOnly cookie otherwise
- POST /account/v1/sign-out -> 204
  With a session (cookie, or `Authorization: Bearer acs_...`); without one: 401.
- GET  /account/v1/me -> {"id", "name", "phone", "email", "language", "service_opt_out",
    "tier", "cards", "blocked": null | {"reason", "at"}, "consents"}
- GET  /account/v1/balance -> {"available", "pending", "debt", "pending_lots":
    [{"points", "activates_at"}], "expiring_within_30_days", "expiring_lots":
    [{"points", "expires_at"}], "as_of"}
- GET  /account/v1/history?limit=N (1..100) -> {"receipts": [{"receipt_id", "kind", "store",
    "at", "total", "earned", "redeemed", "clawback", "refund", "original_receipt_id",
    "goods": [{"sku", "name", "qty", "price", "amount"}]}], "movements": [...]}
- GET  /account/v1/offers -> {"offers": [{"offer", "campaigns", "until", "activated"}],
    "earned": [{"offer", "expires_at"}]}
- POST /account/v1/offers {"offer": str} -> 200 as GET; 403 while the customer is blocked
- PATCH /account/v1/contacts {"email"?: null, "language"?, "service_opt_out"?} -> 200 as /me
- POST /account/v1/contacts/email {"email": str} -> 202 {"challenge", "channel", "expires_at",
    "resend_after"}: a code to the new address; 429 + Retry-After
- POST /account/v1/contacts/email/confirm {"challenge", "code", "email"} -> 200 as /me
- POST /account/v1/consents {"kind": "processing"|"advertising", "granted": bool}
    -> 201 {"processing", "advertising"}
- GET  /account/v1/personal-data -> the export (central.personal_data.export), as a download
- POST /account/v1/erase {"confirm": "erase"} -> 200 {"erased_at"}; the session ends

Changes, sign-ins and exports are audited with the customer as the actor (`customer:{id}`).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from central import (
    account_sign_in,
    account_views,
    audit,
    customers,
    messages,
    personal_data,
)
from central.auth_failures import Throttle
from central.errors import Refused
from central.message_channels import Channels, LogChannel, NotSent, Outgoing, Rejected
from central.web_common import (
    CLOCK,
    DB,
    SECRETS,
    TRUSTED_PROXIES,
    ApiError,
    error_response,
    field,
    json_body,
    query_int,
    source,
)
from protocol import bounds

routes = web.RouteTableDef()

COOKIE = "tillpoint_account"
HISTORY_LIMIT = bounds.IntRange(1, account_views.MAX_HISTORY, "limit")
CONTACT_FIELDS = ("email", "language", "service_opt_out")
SESSION_KINDS = ("cookie", "bearer")


@dataclass
class AccountLimits:
    """Per-source limits, in memory (like the staff throttle): code requests, wrong codes,
    and requests of any kind."""

    codes: Throttle = dataclasses.field(default_factory=lambda: _per_source(10, 600.0))
    wrong_codes: Throttle = dataclasses.field(default_factory=lambda: _per_source(20, 600.0))
    requests: Throttle = dataclasses.field(default_factory=lambda: _per_source(300, 60.0))


def _per_source(limit: int, window: float) -> Throttle:
    return Throttle(limit=limit, window=window)


# How sign-in codes leave: the central's message channels (central.message_channels).
CHANNELS = web.AppKey("account_channels", Channels)
LIMITS = web.AppKey("account_limits", AccountLimits)
CUSTOMER = web.RequestKey("account_customer", str)
TOKEN = web.RequestKey("account_token", str)


def development_channels() -> Channels:
    """Codes written to the log (central.message_channels.LogChannel): a central given no
    channels is a development one."""
    return Channels(email=LogChannel("email"), sms=LogChannel("sms"))


def setup(app: web.Application, channels: Channels | None) -> None:
    app[CHANNELS] = channels if channels is not None else development_channels()
    app[LIMITS] = AccountLimits()
    app.router.add_routes(routes)


def too_many(message: str, wait: int) -> web.Response:
    refused = error_response(429, message)
    refused.headers["Retry-After"] = str(wait)
    return refused


def _limited(throttle: Throttle, request: web.Request) -> int | None:
    return throttle.retry_after(source(request))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def public(handler: Handler) -> Handler:
    """A route open without a session, under the per-source request limit."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        limits = request.app[LIMITS]
        if (wait := _limited(limits.requests, request)) is not None:
            return too_many("too many requests from this address; try again later", wait)
        limits.requests.failed(source(request))  # counts every request, not only failures
        return await handler(request)

    return wrapped


def _token(request: web.Request) -> str | None:
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer "):
        return given[len("Bearer "):].strip()
    return request.cookies.get(COOKIE)


def signed_in(handler: Handler) -> Handler:
    """A route for a signed-in customer: `request[CUSTOMER]` is the session's customer."""

    @public
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = _token(request)
        customer = None if token is None else account_sign_in.session_customer(
            request.app[DB], token, request.app[CLOCK]())
        if customer is None or token is None:
            raise ApiError(401, "sign in first: this session is missing, expired or ended")
        request[CUSTOMER] = customer
        request[TOKEN] = token
        return await handler(request)

    return wrapped


def actor_of(customer_id: str) -> str:
    return f"customer:{customer_id}"


@contextmanager
def audited(request: web.Request, action: str) -> Iterator[audit.Change]:
    """A change (or export) by the customer, audited with them as the actor, in one
    transaction with the change."""
    who = actor_of(request[CUSTOMER])
    with audit.recorded(request.app[DB], request.app[CLOCK](), who, action, who) as change:
        yield change


# -- signing in ---------------------------------------------------------------------------


@routes.post("/account/v1/sign-in/code")
@public
async def request_code(request: web.Request) -> web.Response:
    limits = request.app[LIMITS]
    if (wait := _limited(limits.codes, request)) is not None:
        return too_many("too many sign-in codes asked for from this address; try again"
                        " later", wait)
    body = await json_body(request)
    _only(body, ("phone", "email"))
    contact = account_sign_in.contact_of(body.get("phone"), body.get("email"))
    conn, now = request.app[DB], request.app[CLOCK]()
    key = request.app[SECRETS].staff_token_key
    try:
        issued = account_sign_in.issue(conn, key, contact, now)
    except account_sign_in.TooSoon as e:
        return too_many(str(e), e.retry_after)
    limits.codes.failed(source(request))
    if issued.customer_id is not None:
        await _send_code(request, contact, issued, "sign-in")
    # The same answer whether or not the contact is a customer's.
    return web.json_response({
        "challenge": issued.challenge, "channel": contact.channel,
        "expires_at": issued.expires_at.isoformat(),
        "resend_after": int(account_sign_in.RESEND_AFTER.total_seconds())}, status=202)


async def _send_code(request: web.Request, contact: account_sign_in.Contact,
                     issued: account_sign_in.Issued, what: str) -> None:
    # Sent at once, not through the outbox: a code is good for minutes, and the outbox would
    # keep it in clear.
    channel = request.app[CHANNELS].get(contact.channel)
    conn = request.app[DB]
    if channel is None:
        account_sign_in.void(conn, issued.challenge)
        raise ApiError(503, f"sign-in codes by {contact.channel} are not available here;"
                            " try the other contact")
    minutes = int(account_sign_in.CODE_LIFETIME.total_seconds() // 60)
    text = (f"{issued.code} is your {what} code. It is good for {minutes} minutes."
            " Nobody from the shop will ever ask you for it.")
    try:
        await channel.send(Outgoing(key=f"account-code:{issued.challenge}", to=contact.address,
                                    subject=f"Your {what} code", body=text))
    except (NotSent, Rejected):
        account_sign_in.void(conn, issued.challenge)
        raise ApiError(503, f"the {what} code could not be sent; try again later") from None


@routes.post("/account/v1/sign-in")
@public
async def sign_in(request: web.Request) -> web.Response:
    limits = request.app[LIMITS]
    src = source(request)
    if (wait := limits.wrong_codes.retry_after(src)) is not None:
        return too_many("too many wrong sign-in codes from this address; try again later",
                        wait)
    body = await json_body(request)
    _only(body, ("challenge", "code", "session"))
    challenge = field(body, "challenge", str, max_len=64)
    code = field(body, "code", str, max_len=16)
    kind = field(body, "session", str, required=False, default="cookie")
    if kind not in SESSION_KINDS:
        raise ApiError(400, f"field 'session' must be one of {', '.join(SESSION_KINDS)}")
    conn, now = request.app[DB], request.app[CLOCK]()
    try:
        customer = account_sign_in.check(conn, request.app[SECRETS].staff_token_key,
                                         challenge, code, now)
    except Refused as e:
        if e.status in (404, 410, 422):
            limits.wrong_codes.failed(src)
        raise
    with audit.recorded(conn, now, actor_of(customer), "account.sign-in", actor_of(customer)):
        token, expires = account_sign_in.start_session(conn, customer, now)
    answer: dict[str, Any] = {"customer_id": customer, "expires_at": expires.isoformat()}
    if kind == "bearer":
        answer["token"] = token
    resp = web.json_response(answer)
    if kind == "cookie":
        resp.set_cookie(COOKIE, token, path="/account", httponly=True, samesite="Strict",
                        secure=_over_tls(request),
                        max_age=int(account_sign_in.SESSION_LIFETIME.total_seconds()))
    return resp


def _over_tls(request: web.Request) -> bool:
    """Whether the customer's browser reached us over TLS: directly, or through a trusted
    proxy that says so (a proxy's TLS would otherwise leave the cookie without `Secure`)."""
    if request.secure:
        return True
    try:
        peer = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return False
    return (request.app[TRUSTED_PROXIES].trusts(peer)
            and request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https")


@routes.post("/account/v1/sign-out")
@signed_in
async def sign_out(request: web.Request) -> web.Response:
    account_sign_in.end_session(request.app[DB], request[TOKEN], request.app[CLOCK]())
    resp = web.Response(status=204)
    resp.del_cookie(COOKIE, path="/account")
    return resp


# -- the account --------------------------------------------------------------------------


def _me(request: web.Request) -> dict[str, Any]:
    conn, cid = request.app[DB], request[CUSTOMER]
    profile = customers.read(conn, cid)
    reach = messages.contacts(conn, cid)
    return {"id": cid, "name": profile["name"], "phone": profile["phone"],
            "email": reach.email if reach else None,
            "language": reach.language if reach else None,
            "service_opt_out": reach.service_opt_out if reach else False,
            "tier": profile["tier"], "cards": profile["cards"],
            "blocked": profile["blocked"],
            "consents": personal_data.consents(conn, cid)}


@routes.get("/account/v1/me")
@signed_in
async def me(request: web.Request) -> web.Response:
    return web.json_response(_me(request))


@routes.get("/account/v1/balance")
@signed_in
async def balance(request: web.Request) -> web.Response:
    return web.json_response(account_views.balance(request.app[DB], request[CUSTOMER],
                                                   request.app[CLOCK]()))


@routes.get("/account/v1/history")
@signed_in
async def history(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 20, HISTORY_LIMIT)
    return web.json_response(account_views.history(request.app[DB], request[CUSTOMER], limit))


@routes.get("/account/v1/offers")
@signed_in
async def offers(request: web.Request) -> web.Response:
    return web.json_response(account_views.offers(request.app[DB], request[CUSTOMER],
                                                  request.app[CLOCK]()))


@routes.post("/account/v1/offers")
@signed_in
async def activate_offer(request: web.Request) -> web.Response:
    body = await json_body(request)
    _only(body, ("offer",))
    offer = field(body, "offer", str).strip()
    conn, cid, now = request.app[DB], request[CUSTOMER], request.app[CLOCK]()
    if (blocked := customers.read(conn, cid)["blocked"]) is not None:
        # A blocked customer still reads, downloads and erases their data; they take up
        # nothing new until head office lifts the block.
        raise ApiError(403, f"the account is blocked ({blocked['reason']}): offers cannot be"
                            " activated; ask the shop's support")
    with audited(request, "customer.offer.activate") as change:
        account_views.activatable(conn, cid, offer, now)
        # The same domain code as head office's activation (POST /api/v1/customers/{id}/offers)
        customers.activate_offer(conn, cid, offer, now)
        change.extra["offer"] = offer
    return web.json_response(account_views.offers(conn, cid, now))


@routes.patch("/account/v1/contacts")
@signed_in
async def change_contacts(request: web.Request) -> web.Response:
    body = await json_body(request)
    _only(body, CONTACT_FIELDS)
    if not body:
        raise ApiError(400, f"give at least one of the fields {', '.join(CONTACT_FIELDS)}")
    if body.get("email") is not None:
        raise ApiError(400, "field 'email' is set with POST /account/v1/contacts/email and the"
                            " code sent to it (here only removed, with null)")
    conn, cid = request.app[DB], request[CUSTOMER]
    with audited(request, "message-contacts.set") as change:
        change.before = {"changed": sorted(body)}
        messages.set_contacts(conn, cid, body, "account", actor_of(cid), request.app[CLOCK]())
        change.after = {"changed": sorted(body), "source": "account"}
    return web.json_response(_me(request))


@routes.post("/account/v1/contacts/email")
@signed_in
async def request_email_code(request: web.Request) -> web.Response:
    """A new e-mail address becomes the customer's once they prove it is theirs: a code goes
    to it, and .../confirm with that code saves it. Without the proof anyone signed in could
    name another person's address, which then would sign in to their account."""
    limits = request.app[LIMITS]
    if (wait := _limited(limits.codes, request)) is not None:
        return too_many("too many codes asked for from this address; try again later", wait)
    body = await json_body(request)
    _only(body, ("email",))
    contact = account_sign_in.contact_of(None, field(body, "email", str, max_len=254))
    conn, cid, now = request.app[DB], request[CUSTOMER], request.app[CLOCK]()
    try:
        issued = account_sign_in.issue(conn, request.app[SECRETS].staff_token_key, contact,
                                       now, purpose="email", customer_id=cid)
    except account_sign_in.TooSoon as e:
        return too_many(str(e), e.retry_after)
    limits.codes.failed(source(request))
    await _send_code(request, contact, issued, "e-mail confirmation")
    return web.json_response({
        "challenge": issued.challenge, "channel": contact.channel,
        "expires_at": issued.expires_at.isoformat(),
        "resend_after": int(account_sign_in.RESEND_AFTER.total_seconds())}, status=202)


@routes.post("/account/v1/contacts/email/confirm")
@signed_in
async def confirm_email(request: web.Request) -> web.Response:
    limits, src = request.app[LIMITS], source(request)
    if (wait := limits.wrong_codes.retry_after(src)) is not None:
        return too_many("too many wrong codes from this address; try again later", wait)
    body = await json_body(request)
    _only(body, ("challenge", "code", "email"))
    challenge = field(body, "challenge", str, max_len=64)
    code = field(body, "code", str, max_len=16)
    email = account_sign_in.contact_of(None, field(body, "email", str, max_len=254)).address
    conn, cid, now = request.app[DB], request[CUSTOMER], request.app[CLOCK]()
    key = request.app[SECRETS].staff_token_key
    went = account_sign_in.sent_to(conn, key, challenge, account_sign_in.Contact("email", email))
    if went is None:
        raise ApiError(404, "field 'challenge': no such code was sent for this")
    if not went:
        raise ApiError(400, "field 'email' is not the address the code was sent to")
    try:
        proved = account_sign_in.check(conn, key, challenge, code, now, purpose="email")
    except Refused as e:
        if e.status in (404, 410, 422):
            limits.wrong_codes.failed(src)
        raise
    if proved != cid:
        raise ApiError(404, "field 'challenge': no such code was sent for this")
    with audited(request, "message-contacts.set") as change:
        messages.set_contacts(conn, cid, {"email": email}, "account", actor_of(cid), now)
        change.after = {"changed": ["email"], "source": "account", "proved": True}
    return web.json_response(_me(request))


@routes.post("/account/v1/consents")
@signed_in
async def record_consent(request: web.Request) -> web.Response:
    body = await json_body(request)
    _only(body, ("kind", "granted"))
    conn, cid = request.app[DB], request[CUSTOMER]
    with audited(request, "customer.consent") as change:
        change.before = personal_data.consents(conn, cid)
        change.after = personal_data.record_consent(
            conn, cid, body.get("kind"), body.get("granted"), "account", actor_of(cid),
            request.app[CLOCK]())
    return web.json_response(change.after, status=201)


@routes.get("/account/v1/personal-data")
@signed_in
async def export_personal_data(request: web.Request) -> web.Response:
    with audited(request, "customer.export"):
        exported = personal_data.export(request.app[DB], request[CUSTOMER],
                                        request.app[CLOCK]())
    return web.json_response(exported, headers={
        "Content-Disposition": 'attachment; filename="my-loyalty-data.json"'})


@routes.post("/account/v1/erase")
@signed_in
async def erase(request: web.Request) -> web.Response:
    body = await json_body(request)
    _only(body, ("confirm",))
    if field(body, "confirm", str) != "erase":
        raise ApiError(400, "field 'confirm' must be \"erase\": erasure cannot be undone")
    conn, cid, now = request.app[DB], request[CUSTOMER], request.app[CLOCK]()
    with audited(request, "customer.erase") as change:
        erased = personal_data.erase(conn, cid, actor_of(cid),
                                     "the customer's request in their account", now)
        change.after = erased
        account_sign_in.end_all(conn, cid, now)
    resp = web.json_response({"erased_at": erased["erased_at"]})
    resp.del_cookie(COOKIE, path="/account")
    return resp


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, f"field {unknown[0]!r} is not one of {', '.join(allowed)}")


# -- the page -----------------------------------------------------------------------------

PAGE_FILES = {"index.html": "text/html", "account.css": "text/css",
              "account.js": "text/javascript"}
# Everything the page loads is its own, and Trusted Types make a stray innerHTML of data
# throw instead of parsing it (as central.dashboard's page does): the script sets text only.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
               " img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none';"
               " require-trusted-types-for 'script'; trusted-types 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}


def _asset(name: str) -> bytes:
    return (resources.files("central") / "web" / "account" / name).read_bytes()


def _page_file(name: str) -> web.Response:
    return web.Response(body=_asset(name), content_type=PAGE_FILES[name], charset="utf-8",
                        headers=PAGE_HEADERS)


@routes.get("/account")
async def page(request: web.Request) -> web.Response:
    return _page_file("index.html")


@routes.get("/account/assets/{name}")
async def page_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in PAGE_FILES or name == "index.html":
        raise ApiError(404, "no such file")
    return _page_file(name)
