"""The API tills call: enrolment, batches, the signed rule set, customer deltas."""

from __future__ import annotations

import ipaddress
import logging

from aiohttp import web

from central import (
    card_relink,
    deliveries,
    deltas,
    ingest,
    presence,
    returns,
    rulesets,
    till_reports,
    tills,
)
from central.db import Unavailable, transaction
from central.errors import Refused
from central.ingest_writer import IngestWriter
from central.web_common import (
    CLOCK,
    DB,
    METRICS,
    SECRETS,
    SMS,
    ApiError,
    failed_auth,
    field,
    json_body,
    query_int,
)
from protocol import bounds, ruleset_delta
from protocol.card_keys import encode_for_till
from protocol.cards import is_card_token
from protocol.request_auth import HEADER_TILL, verify_request
from protocol.signing import BadSignature, public_key_hex

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# The one writer of batches, so that batches arriving together commit together.
WRITER = web.AppKey("ingest_writer", IngestWriter)
SIGNED_RULESETS = web.AppKey("signed_rulesets", rulesets.SignedRuleSets)

MSGPACK = "application/msgpack"
MAX_RETURN_LINES = 500  # as many as a receipt has (agent.pos_input)


async def _calling_till(request: web.Request) -> str:
    """The till that signed this request; every till endpoint but enrolment checks it."""
    body = await request.read()
    now = int(request.app[CLOCK]().timestamp())
    try:
        return verify_request(
            request.headers,
            request.method,
            request.path_qs,
            body,
            now,
            lambda till_id: tills.public_key_of(request.app[DB], till_id),
        )
    except (BadSignature, tills.TillRefused) as e:
        named = (request.headers.get(HEADER_TILL) or "")[:64] or None
        failed_auth(request, f"signed request refused: {e}", named)
        if isinstance(e, tills.TillRefused):
            raise
        raise ApiError(401, str(e)) from None


def private_transport(request: web.Request) -> bool:
    """TLS to this process, or a peer on the loopback (the demo, or a TLS proxy on this
    host): the only ways card keys leave the central."""
    if request.secure:
        return True
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


CARD_KEYS_WITHHELD = ("card keys are sent only over TLS: give the till the central's "
                      "https:// URL")


@routes.post("/sync/v1/enroll")
async def enroll(request: web.Request) -> web.Response:
    body = await json_body(request)
    token = field(body, "token", str)
    public_key = field(body, "public_key", str)
    proof = field(body, "proof", str)  # the token signed with the key (protocol.enrolment)
    name = field(body, "name", str, required=False, default="till")
    secrets = request.app[SECRETS]
    try:
        till_id, store = tills.enrol(request.app[DB], token, public_key, proof, name,
                                    request.app[CLOCK]())
    except BadSignature as e:
        raise ApiError(400, str(e)) from None
    except tills.EnrolmentError as e:
        if e.status == 403:  # an unknown or expired token: someone guessing
            failed_auth(request, f"enrolment refused: {e}")
        raise
    log.info("till %s enrolled for store %s", till_id, store)
    return web.json_response(
        {
            "till_id": till_id,
            "store": store,
            # over plain HTTP the keys would cross the network in clear: withheld
            **({"card_keys": secrets.card_keys.to_dict()} if private_transport(request)
               else {"card_keys_withheld": CARD_KEYS_WITHHELD}),
            "central_public_key": public_key_hex(secrets.signing_key),
        }
    )


@routes.post("/sync/v1/batches")
async def batches(request: web.Request) -> web.Response:
    data = await request.read()
    with request.app[METRICS].timed_batch() as timer:
        try:
            ack = await request.app[WRITER].submit(data, request.app[CLOCK]())
        except ingest.BatchRefused as e:
            timer.outcome = "refused"
            if e.failed_auth:  # other refusals raised their alert where they were decided
                failed_auth(request, str(e), e.till_id)
            raise ApiError(e.status, str(e)) from None
        except Unavailable:
            timer.outcome = "unavailable"  # answered 503 by the web layer; the till resends
            raise
        timer.outcome = "acked"
    request.app[METRICS].entries.inc(ack.applied)
    return web.json_response(ack.to_dict())


@routes.get("/sync/v1/ruleset")
async def ruleset(request: web.Request) -> web.Response:
    """The newest rule set, signed; `have=N` (the version the till holds) gets 304 Not
    Modified while N is still the newest, so an unchanged rule set costs nothing to pull."""
    till_id = await _calling_till(request)
    try:
        have = int(request.query.get("have", "0"))
    except ValueError:
        raise ApiError(400, "'have' must be an integer rule-set version") from None
    conn = request.app[DB]
    version = rulesets.current_version(conn)
    if version is None:
        raise ApiError(404, "no rule set has been published")
    # Recorded: re-pricing honours a version only if it was the newest this till was sent.
    # On 304 too: a till that holds the newest version says so, and a till that received
    # it before deliveries were recorded (migration 12) would be refused for selling with
    # it. Only the newest is ever recorded: claiming `have=N` earns nothing else.
    deliveries.record_ruleset(conn, till_id, version, request.app[CLOCK]())
    if have == version:
        return web.Response(status=304)
    if request.query.get("delta") == "1" and 0 < version - have <= rulesets.DELTA_SPAN:
        # A till that rebuilds versions says so: what changed since the one it holds.
        delta = request.app[SIGNED_RULESETS].delta(conn, have, version,
                                                   request.app[SECRETS].signing_key)
        if delta is not None:
            return web.Response(body=delta, content_type=ruleset_delta.CONTENT_TYPE)
    blob = request.app[SIGNED_RULESETS].get(conn, version, request.app[SECRETS].signing_key)
    return web.Response(body=blob, content_type=MSGPACK)


@routes.get("/sync/v1/card-keys")
async def card_keys(request: web.Request) -> web.Response:
    """The card keys in their lifetime, signed for the calling till; pulled with the rule set,
    so a rotation reaches every till and a retired key leaves it."""
    till_id = await _calling_till(request)
    if not private_transport(request):
        raise ApiError(403, CARD_KEYS_WITHHELD)
    secrets = request.app[SECRETS]
    now = request.app[CLOCK]()
    blob = encode_for_till(secrets.signing_key, till_id, secrets.card_keys.active(now), now)
    return web.Response(body=blob, content_type=MSGPACK)


@routes.get("/sync/v1/customers")
async def customers(request: web.Request) -> web.Response:
    till_id = await _calling_till(request)
    cursor = query_int(request, "since", 0)
    now = request.app[CLOCK]()
    return web.Response(body=deltas.customer_deltas_json(request.app[DB], till_id, cursor,
                                                         now, request.app[SECRETS].card_keys
                                                         .active(now)),
                        content_type="application/json")


@routes.get("/sync/v1/position")
async def position(request: web.Request) -> web.Response:
    """How far the central holds one of the calling till's epochs, with hashes to compare."""
    till_id = await _calling_till(request)
    epoch = bounds.text(request.query.get("epoch", ""), "epoch")
    first = query_int(request, "from", 1)
    last = query_int(request, "to", 0)
    if not epoch:
        raise ApiError(400, "'epoch' is required")
    return web.json_response(ingest.position(request.app[DB], till_id, epoch, first, last))


@routes.post("/sync/v1/returns/reserve")
async def reserve_return(request: web.Request) -> web.Response:
    """A till is about to take a return: the sale, what of it is back, and a lease on it."""
    till_id = await _calling_till(request)
    body = await json_body(request)
    receipt_id = field(body, "receipt_id", str)
    raw = field(body, "lines", dict)
    lines: dict[int, int] = {}
    if len(raw) > MAX_RETURN_LINES:
        raise ApiError(400, f"field 'lines' must name at most {MAX_RETURN_LINES} lines")
    for k, q in raw.items():
        if not bounds.ascii_digits(k) or len(k) > 6 or isinstance(q, bool) \
                or not isinstance(q, int) or q < 1:
            raise ApiError(400, "'lines' must map line numbers to quantities of at least 1")
        lines[int(k)] = bounds.QTY.check(q, f"lines.{k}")
    if not lines:
        raise ApiError(400, "'lines' must name at least one line")
    conn = request.app[DB]
    try:
        with transaction(conn):
            answer = returns.reserve(conn, till_id, receipt_id, lines, request.app[CLOCK]())
    except Refused as e:
        raise ApiError(e.status, str(e)) from None
    return web.json_response(answer)


@routes.post("/sync/v1/returns/release")
async def release_return(request: web.Request) -> web.Response:
    """The till gave the return up (cancelled or never printed): free what it held."""
    till_id = await _calling_till(request)
    lease = field(await json_body(request), "lease", str)
    conn = request.app[DB]
    with transaction(conn):
        released = returns.release(conn, till_id, lease)
    return web.json_response({"released": released})


@routes.post("/sync/v1/reports")
async def till_report(request: web.Request) -> web.Response:
    """A till tells of something head office should see (central.till_reports): counted
    into one alert per till, kind and period."""
    till_id = await _calling_till(request)
    body = await json_body(request)
    kind = field(body, "kind", str)
    if kind not in till_reports.KINDS:
        raise ApiError(400, f"'kind' must be one of {sorted(till_reports.KINDS)}")
    within = bounds.IntRange(0, till_reports.MAX_COUNT)
    numbers = {name: field(body, name, int, within=within) for name in ("count", "misses")}
    conn = request.app[DB]
    with transaction(conn):
        alert = till_reports.record(conn, request.app[CLOCK](), till_id, kind,
                                    numbers["count"], numbers["misses"])
    return web.json_response({"alert": alert})


@routes.post("/sync/v1/presence/sms")
async def presence_sms(request: web.Request) -> web.Response:
    """A till asks for an SMS code for a customer at its checkout (central.presence)."""
    till_id = await _calling_till(request)
    customer_id = field(await json_body(request), "customer_id", str, max_len=64)
    sms = request.app[SMS]
    if sms is None:
        raise ApiError(503, "no SMS gateway is configured at the central: use the app's code"
                            " or the card")
    conn = request.app[DB]
    now = request.app[CLOCK]()
    try:
        with transaction(conn):
            challenge = presence.issue(conn, till_id, customer_id, now)
    except Refused as e:
        raise ApiError(e.status, str(e)) from None
    try:
        await sms.send(challenge.phone, f"Tillpoint: your code is {challenge.code}. Tell it"
                                        " to the cashier only; it is good for 5 minutes.")
    except presence.SmsFailed as e:
        with transaction(conn):
            presence.void(conn, challenge.id)
        log.error("SMS for customer %s not sent: %s", customer_id, e)
        raise ApiError(502, f"the SMS could not be sent: {e}") from None
    return web.json_response({"challenge": challenge.id,
                              "expires_at": challenge.expires_at.isoformat()})


@routes.post("/sync/v1/cards/relink")
async def relink_card(request: web.Request) -> web.Response:
    """A card whose key retired, linked again at this till: the customer proved the phone on
    the account with an SMS code this till checked, and presented the card
    (central.card_relink)."""
    till_id = await _calling_till(request)
    body = await json_body(request)
    challenge = field(body, "challenge", str, max_len=64)
    token = field(body, "token", str, max_len=64)
    if not is_card_token(token):
        raise ApiError(400, "field 'token' must be a card token (protocol.cards)")
    key_version = field(body, "key_version", int, within=bounds.COUNTER)
    last4 = field(body, "last4", str, max_len=4)
    if len(last4) != 4 or not last4.isascii() or not last4.isdigit():
        raise ApiError(400, "field 'last4' must be the card's last four digits")
    conn = request.app[DB]
    try:
        with transaction(conn):
            customer_id = card_relink.relink(conn, till_id, challenge, token, key_version,
                                             last4, request.app[SECRETS].card_keys,
                                             request.app[CLOCK]())
    except Refused as e:
        raise ApiError(e.status, str(e)) from None
    return web.json_response({"customer_id": customer_id, "card_last4": last4})


@routes.post("/sync/v1/presence/sms/check")
async def presence_sms_check(request: web.Request) -> web.Response:
    """The code the customer read out, for the challenge this till asked for."""
    till_id = await _calling_till(request)
    body = await json_body(request)
    challenge = field(body, "challenge", str, max_len=64)
    code = field(body, "code", str, max_len=16)
    conn = request.app[DB]
    with transaction(conn):  # a wrong try is counted even though the answer is an error
        outcome = presence.check(conn, till_id, challenge, code, request.app[CLOCK]())
    if isinstance(outcome, Refused):
        raise ApiError(outcome.status, str(outcome))
    return web.json_response({"customer_id": outcome, "verified": True})
