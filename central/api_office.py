"""The head-office API: customers, tills, enrolment tokens, rule sets, alerts, reconciliation.

Every route needs a staff token and declares the roles it admits (`@admits`, checked by
central.office_auth); the actor of a change is the token's account. Card numbers arrive
only in request bodies (never in a URL, which access logs would keep) and leave only as
their last four digits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from central import (
    alerts,
    api_sync,
    approvals,
    customers,
    journal_personal,
    ledger,
    offline_caps,
    personal_data,
    quarantine,
    repricing,
    rulesets,
    tills,
)
from central.office_auth import actor, audited
from central.roles import Role as R
from central.roles import admits
from central.web_common import (
    CLOCK,
    DB,
    SECRETS,
    ApiError,
    field,
    json_body,
    query_int,
)
from protocol import app_codes, bounds
from protocol.cards import InvalidCardNumber
from protocol.pars import InvalidPar
from protocol.rules import RuleSetError
from protocol.wire import unpack

routes = web.RouteTableDef()
TOKEN_HOURS = bounds.IntRange(1, 24 * 30, "hours")


@routes.post("/api/v1/customers")
@admits(R.ADMIN, R.SUPPORT)
async def create_customer(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        with audited(request, "customer.create") as change:
            created = customers.create(
                request.app[DB],
                request.app[SECRETS].card_keys,
                request.app[CLOCK](),
                card_number=field(body, "card_number", str),
                name=field(body, "name", str, required=False, default=""),
                phone=field(body, "phone", str, required=False),
                tier=field(body, "tier", str, required=False),
                segments=field(body, "segments", list, required=False),
                birthday=field(body, "birthday", str, required=False),
                welcome_bonus=field(body, "welcome_bonus", int, required=False, default=0,
                                    within=bounds.POINTS),
            )
            change.subject, change.after = _customer(created["id"]), created
    except InvalidCardNumber as e:
        raise ApiError(400, str(e)) from None
    return web.json_response(created, status=201)


@routes.post("/api/v1/customers/lookup")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY)
async def lookup_customer(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        with audited(request, "customer.lookup") as change:
            cid = customers.by_card(
                request.app[DB], request.app[SECRETS].card_keys, field(body, "card_number", str)
            )
            change.subject = _customer(cid)
            found = customers.read(request.app[DB], cid, request.app[CLOCK]())
        return web.json_response(found)
    except InvalidCardNumber as e:
        raise ApiError(400, str(e)) from None


@routes.post("/api/v1/customers/{id}/cards")
@admits(R.ADMIN, R.SUPPORT)
async def link_card(request: web.Request) -> web.Response:
    """Link a card to an account (`card_number`, optionally its `kind`: loyalty, bank,
    virtual), e.g. one whose key retired, for which the customer has proved the phone on the
    account first (README: relinking a card); or a bank card by its payment account
    reference (`par`) alone."""
    body = await json_body(request)
    cid = request.match_info["id"]
    try:
        with audited(request, "customer.card.link", _customer(cid)) as change:
            if "par" in body and "card_number" in body:
                raise ApiError(400, "send 'card_number' or 'par', not both")
            if "par" in body:
                linked = customers.link_par(request.app[DB], request.app[SECRETS].card_keys,
                                            cid, field(body, "par", str, max_len=64),
                                            request.app[CLOCK]())
            else:
                linked = customers.link_card(request.app[DB], request.app[SECRETS].card_keys,
                                             cid, field(body, "card_number", str),
                                             request.app[CLOCK](), body.get("kind"))
            change.after = linked
    except (InvalidCardNumber, InvalidPar) as e:
        raise ApiError(400, str(e)) from None
    return web.json_response(linked, status=201)


@routes.get("/api/v1/customers/{id}")
@admits(R.ADMIN, R.SUPPORT, R.SECURITY)
async def read_customer(request: web.Request) -> web.Response:
    conn, cid = request.app[DB], request.match_info["id"]
    with audited(request, "customer.read", _customer(cid)):
        found = customers.read(conn, cid, request.app[CLOCK]())
        found["history"] = ledger.history(conn, found["id"])
        found["consents"] = personal_data.consents(conn, found["id"])
    return web.json_response(found)


@routes.post("/api/v1/customers/{id}/consents")
@admits(R.ADMIN, R.SUPPORT)
async def record_consent(request: web.Request) -> web.Response:
    """Consent to processing, or separately to advertising messages: granted or withdrawn,
    with its source (where the customer gave it) and who records it; the time is now."""
    body = await json_body(request)
    cid = request.match_info["id"]
    with audited(request, "customer.consent", _customer(cid)) as change:
        change.before = personal_data.consents(request.app[DB], cid)
        change.after = personal_data.record_consent(
            request.app[DB], cid, body.get("kind"), body.get("granted"), body.get("source"),
            actor(request, body), request.app[CLOCK]())
    return web.json_response(change.after, status=201)


@routes.get("/api/v1/customers/{id}/personal-data")
@admits(R.ADMIN, R.SUPPORT)
async def export_personal_data(request: web.Request) -> web.Response:
    """Everything held about the customer, for a subject access request."""
    cid = request.match_info["id"]
    with audited(request, "customer.export", _customer(cid)):
        exported = personal_data.export(request.app[DB], cid, request.app[CLOCK]())
    return web.json_response(exported)


@routes.post("/api/v1/customers/{id}/erase")
@admits(R.ADMIN, R.SUPPORT)
async def erase_personal_data(request: web.Request) -> web.Response:
    """Erase the customer's personal data; the account stays, pseudonymous, with its
    balance and ledger."""
    body = await json_body(request)
    cid = request.match_info["id"]
    with audited(request, "customer.erase", _customer(cid)) as change:
        change.after = personal_data.erase(request.app[DB], cid, actor(request, body),
                                           field(body, "reason", str), request.app[CLOCK]())
    return web.json_response(change.after)


@routes.patch("/api/v1/customers/{id}")
@admits(R.ADMIN, R.SUPPORT)
async def update_customer(request: web.Request) -> web.Response:
    body = await json_body(request)
    conn, cid, now = request.app[DB], request.match_info["id"], request.app[CLOCK]()
    with audited(request, "customer.update", _customer(cid)) as change:
        change.before = customers.read(conn, cid, now)
        change.after = customers.update(conn, cid, body, now)
        change.extra["changed"] = sorted(k for k in body if change.before.get(k)
                                         != change.after.get(k))
    return web.json_response(change.after)


@routes.post("/api/v1/customers/{id}/offers")
@admits(R.ADMIN, R.MARKETING, R.SUPPORT)
async def activate_offer(request: web.Request) -> web.Response:
    body = await json_body(request)
    cid = request.match_info["id"]
    with audited(request, "customer.offer.activate", _customer(cid)) as change:
        change.after = customers.activate_offer(request.app[DB], cid, field(body, "offer", str),
                                                request.app[CLOCK]())
        change.extra["offer"] = body["offer"]
    return web.json_response(change.after)


@routes.post("/api/v1/customers/{id}/adjustments")
@admits(R.ADMIN, R.SUPPORT)
async def adjust_customer(request: web.Request) -> web.Response:
    body = await json_body(request)
    conn, cid, now = request.app[DB], request.match_info["id"], request.app[CLOCK]()
    points = field(body, "points", int, within=bounds.ADJUSTMENT)
    reason = field(body, "reason", str)
    by = actor(request, body)
    with audited(request, "customer.adjust", _customer(cid)) as change:
        if approvals.needs_approval(conn, points):
            # Above the programme's threshold: a second person approves it first (202).
            change.action = "adjustment.request"
            change.after = approvals.request(conn, cid, points, reason, by, now)
            return web.json_response(change.after, status=202)
        change.before = {"balance": ledger.balance(conn, cid, now).to_dict()}
        result = customers.adjust(conn, cid, points, by, reason, now)
        change.after = {"balance": result.get("balance"), "points": points, "reason": reason}
    return web.json_response(result)


@routes.get("/api/v1/tills")
@admits(R.ADMIN, R.SECURITY, R.ANALYST, R.AUDITOR)
async def list_tills(request: web.Request) -> web.Response:
    return web.json_response({"tills": tills.list_tills(request.app[DB])})


@routes.post("/api/v1/tills/{id}/revoke")
@admits(R.ADMIN, R.SECURITY)
async def revoke_till(request: web.Request) -> web.Response:
    with audited(request, "till.revoke", _till(request.match_info["id"])) as change:
        if not tills.revoke(request.app[DB], request.match_info["id"]):
            raise ApiError(404, "no such till")
        change.after = {"status": "revoked"}
    return web.json_response({"id": request.match_info["id"], "status": "revoked"})


@routes.post("/api/v1/tills/{id}/release")
@admits(R.ADMIN, R.SECURITY)
async def release_till(request: web.Request) -> web.Response:
    """Lift a till's quarantine: its held points of confirmed sales are credited."""
    body = await json_body(request)
    with audited(request, "till.release", _till(request.match_info["id"])) as change:
        released = quarantine.release(request.app[DB], request.match_info["id"],
                                      actor(request, body), request.app[CLOCK]())
        if released is None:
            raise ApiError(404, "no such till")
        change.after = released
    return web.json_response(released)


@routes.get("/api/v1/tills/{id}/journal")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def till_journal(request: web.Request) -> web.Response:
    """What the central holds of a till's journal, to compare with the till's own. The
    hashes are the till's; `personal` says whether the entry's personal values are sealed
    (central.journal_personal) or gone with an erasure, None if it held none."""
    rows = (
        request.app[DB]
        .execute(
            "SELECT j.epoch, j.seq, j.hash, j.body, s.customer_id AS sealed_for, k.key"
            " FROM journal j LEFT JOIN journal_sealed s ON s.till_id = j.till_id"
            " AND s.epoch = j.epoch AND s.seq = j.seq"
            " LEFT JOIN customer_keys k ON k.customer_id = s.customer_id"
            " WHERE j.till_id = ? ORDER BY j.epoch, j.seq",
            (request.match_info["id"],),
        )
        .fetchall()
    )
    entries = []
    for r in rows:
        body = unpack(r["body"])
        entries.append(
            {
                "epoch": r["epoch"],
                "seq": r["seq"],
                "hash": r["hash"],
                "kind": body["kind"],
                "receipt_id": body["receipt_id"],
                "cashier": body.get("cashier"),  # None in entries journalled before it
                "presence": (body.get("presence") or {}).get("method"),
                "earned": body["earned"],
                "redeemed": body["redeemed"],
                "clawback": body["clawback"],
                "refund": body["refund"],
                "personal": None if r["sealed_for"] is None
                else "sealed" if r["key"] is not None else "erased",
            }
        )
    return web.json_response({"entries": entries})


@routes.get("/api/v1/tills/{id}/journal/verify")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def verify_till_journal(request: web.Request) -> web.Response:
    """Walk each of the till's epochs from its genesis: places, links, and each entry's
    content as far as it can be checked (central.journal_personal)."""
    till_id = request.match_info["id"]
    if not request.app[DB].execute("SELECT 1 FROM tills WHERE id = ?",
                                   (till_id[:200],)).fetchone():
        raise ApiError(404, "no such till")
    return web.json_response(journal_personal.verify_till(request.app[DB], till_id))


@routes.post("/api/v1/enrolment-tokens")
@admits(R.ADMIN)
async def enrolment_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    store = field(body, "store", str)
    if not store.strip():
        raise ApiError(400, "field 'store' must name the store the till is for")
    hours = field(body, "ttl_hours", int, required=False, default=24, within=TOKEN_HOURS)
    with audited(request, "enrolment-token.create", f"store:{store}") as change:
        token = tills.create_enrolment_token(
            request.app[DB], store, request.app[CLOCK](), timedelta(hours=hours)
        )
        change.after = {"store": store, "ttl_hours": hours}  # never the token
    return web.json_response({"token": token, "store": store}, status=201)


@routes.get("/api/v1/ruleset")
@admits(R.ADMIN, R.MARKETING, R.ANALYST, R.SUPPORT, R.SECURITY, R.AUDITOR)
async def get_ruleset(request: web.Request) -> web.Response:
    rs = rulesets.current(request.app[DB])
    return web.json_response(
        {"version": rs.version, "activates_at": rs.activates_at, "doc": rs.doc}
    )


@routes.put("/api/v1/ruleset")
@admits(R.ADMIN, R.MARKETING)
async def put_ruleset(request: web.Request) -> web.Response:
    body = await json_body(request)
    activates_at = _instant(field(body, "activates_at", str, required=False), "activates_at")
    try:
        with audited(request, "ruleset.publish", "ruleset") as change:
            change.before = {"version": rulesets.current(request.app[DB]).version}
            version = rulesets.publish(
                request.app[DB],
                field(body, "doc", dict),
                actor(request, body),
                request.app[CLOCK](),
                activates_at,
            )
            # The document itself is kept by version in the rule sets' own table.
            change.after = {"version": version, "activates_at": activates_at and
                            activates_at.isoformat()}
    except RuleSetError as e:
        raise ApiError(422, f"rule set refused: {e}") from None
    return web.json_response({"version": version}, status=201)


def _customer(customer_id: str) -> str:
    """The audit log's subject for a customer: the id, never anything personal."""
    return f"customer:{customer_id}"


def _till(till_id: str) -> str:
    return f"till:{till_id}"


def _instant(text: str | None, name: str) -> datetime | None:
    """An ISO 8601 date-time with its UTC offset (tills in other zones read it alike)."""
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"field {name!r} must be an ISO 8601 date-time") from None
    if at.tzinfo is None:
        raise ApiError(400, f"field {name!r} must carry a UTC offset, e.g. {text}+03:00")
    return at


@routes.get("/api/v1/alerts")
@admits(R.ADMIN, R.SECURITY, R.AUDITOR)
async def list_alerts(request: web.Request) -> web.Response:
    """Newest first; `before` (an id, from `next_before`) pages on; filters by `kind`,
    `severity`, `till_id`, `source` and `acked` (true/false); `limit` up to 500."""
    q = request.query
    for name in ("kind", "severity", "till_id", "source"):
        if name in q:
            bounds.text(q[name], name)
    acked = q.get("acked")
    if acked not in (None, "true", "false"):
        raise ApiError(400, "'acked' must be true or false")
    query = alerts.AlertQuery(
        kind=q.get("kind"), severity=q.get("severity"), till_id=q.get("till_id"),
        source=q.get("source"), acked=None if acked is None else acked == "true",
        before=query_int(request, "before", None),
        limit=query_int(request, "limit", 100) or 100)
    return web.json_response(alerts.list_alerts(request.app[DB], query))


@routes.post("/api/v1/alerts/{id}/ack")
@admits(R.ADMIN, R.SECURITY)
async def acknowledge_alert(request: web.Request) -> web.Response:
    body = await json_body(request)
    raw_id = request.match_info["id"]
    if not bounds.ascii_digits(raw_id) or len(raw_id) > 16:
        raise ApiError(404, "no such alert")
    alert_id = int(raw_id)
    with audited(request, "alert.ack", f"alert:{alert_id}") as change:
        found = alerts.acknowledge(request.app[DB], alert_id, actor(request, body),
                                   request.app[CLOCK]())
        if found is None:
            raise ApiError(404, "no such alert")
        change.after = {"acked_at": found.get("acked_at"), "acked_by": found.get("acked_by")}
    return web.json_response(found)


@routes.get("/api/v1/summary")
@admits(R.ADMIN, R.MARKETING, R.ANALYST, R.SECURITY, R.AUDITOR)
async def summary(request: web.Request) -> web.Response:
    """Programme totals straight from the ledger, for reports and reconciliation."""
    conn = request.app[DB]
    by_kind = {
        r["kind"]: r["total"]
        for r in conn.execute("SELECT kind, SUM(points) AS total FROM ledger GROUP BY kind")
    }
    receipts = conn.execute(
        "SELECT COUNT(*) AS n, COUNT(CASE WHEN kind = 'sale' THEN 1 END) AS sales,"
        " COUNT(CASE WHEN kind = 'return' THEN 1 END) AS returns,"
        " COUNT(CASE WHEN customer_id IS NOT NULL AND kind = 'sale' THEN 1 END)"
        " AS member_sales"
        " FROM receipts"
    ).fetchone()
    return web.json_response({"ledger": by_kind, "receipts": dict(receipts)})


@routes.get("/api/v1/offline-caps")
@admits(R.ADMIN, R.SECURITY, R.ANALYST, R.AUDITOR)
async def get_offline_caps(request: web.Request) -> web.Response:
    return web.json_response(offline_caps.current(request.app[DB]).to_dict())


@routes.put("/api/v1/offline-caps")
@admits(R.ADMIN, R.SECURITY)
async def put_offline_caps(request: web.Request) -> web.Response:
    """Set the caps; fields left out keep their defaults, null means no limit."""
    body = await json_body(request)
    by = actor(request, body)
    try:
        caps = offline_caps.OfflineCaps.from_dict(
            {k: v for k, v in body.items() if k != "actor"})
    except offline_caps.CapsError as e:
        raise ApiError(400, str(e)) from None
    with audited(request, "offline-caps.set", "offline-caps") as change:
        change.before = offline_caps.current(request.app[DB]).to_dict()
        offline_caps.set_caps(request.app[DB], caps, by, request.app[CLOCK]())
        change.after = caps.to_dict()
    return web.json_response(caps.to_dict())


@routes.get("/api/v1/repricing")
@admits(R.ADMIN, R.SECURITY, R.ANALYST, R.AUDITOR)
async def repricing_progress(request: web.Request) -> web.Response:
    """How far the central has re-priced tills' sales, and how many did not match."""
    return web.json_response(repricing.progress(request.app[DB]))


@routes.post("/api/v1/customers/{id}/app-code")
@admits(R.ADMIN, R.SUPPORT)
async def app_code_key(request: web.Request) -> web.Response:
    """The key of the customer's app codes (protocol.app_codes) as an `otpauth://` URI, for
    the app to show codes from; over TLS or the loopback only, like the card keys it comes
    from. The same until the card key rotates; then the app asks again."""
    conn = request.app[DB]
    customer_id = request.match_info["id"]
    if conn.execute("SELECT 1 FROM customers WHERE id = ?", (customer_id,)).fetchone() is None:
        raise ApiError(404, "no such customer")
    if not api_sync.private_transport(request):
        raise ApiError(403, "an app's code key is sent only over TLS")
    key = request.app[SECRETS].card_keys.newest
    with audited(request, "customer.app-code", _customer(customer_id)) as change:
        change.after = {"key_version": key.version}
    return web.json_response({"otpauth_uri": app_codes.otpauth_uri(key, customer_id),
                              "key_version": key.version}, status=201)
