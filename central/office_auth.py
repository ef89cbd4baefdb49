"""Who calls the head-office API, and whether their role may call the route they asked for.

Every `/api/` request carries `Authorization: Bearer <token>`: a staff token
(`<staff id>:<secret>`, central.staff) or the data directory's admin token. Without a valid
one: 401, counted per source (and per account a staff token names) by the throttle, which
answers 429 to a source that guessed too often, before it looks at the token. With one, the
route's declared roles (central.roles.admits) decide: another role gets 403. Handlers learn
the caller from `caller(request)`, never from the body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from central import audit, auth_failures, staff
from central.roles import admitted
from central.web_common import (
    CLOCK,
    DB,
    SECRETS,
    THROTTLE,
    ApiError,
    error_response,
    failed_auth,
    field,
    source,
)

STAFF = web.RequestKey("staff", staff.Account)


def account_named_by(credential: str) -> str | None:
    """The account a head-office credential names, if it names one.

    The admin token names none (`Bearer <token>`); a staff token names its account before
    a colon (`Bearer st_1a2b3c4d5e:<secret>`), so wrong guesses at it are also counted per
    account (central.auth_failures.Throttle).
    """
    token = credential.removeprefix("Bearer ").strip()
    account, sep, _ = token.partition(":")
    return account[:64] if sep and account else None


def caller(request: web.Request) -> staff.Account:
    """The staff account the request's token proved (the middleware has checked it)."""
    return request[STAFF]


def actor(request: web.Request, body: dict[str, Any]) -> str:
    """Who makes a change: the staff account of the token, never the body.

    Clients of earlier versions send an `actor` field; it is still accepted (and must be
    valid text, like any field) but is not what the record says: the account that
    authenticated is. Refusing it would break every existing script at the very moment
    the tokens change, and nothing reads it, so it cannot misattribute anything."""
    if "actor" in body and body["actor"] is not None:
        field(body, "actor", str)
    return caller(request).id


@contextmanager
def audited(request: web.Request, action: str, subject: str = "") -> Iterator[audit.Change]:
    """Make a change (or read personal data) and record it in the audit log under the
    caller's account, in one transaction (central.audit.recorded)."""
    with audit.recorded(request.app[DB], request.app[CLOCK](), caller(request).id, action,
                        subject) as change:
        yield change


@web.middleware
async def staff_auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    given = request.headers.get("Authorization", "")
    src, named = source(request), account_named_by(given)
    throttle = request.app[THROTTLE]
    if (wait := throttle.retry_after(src, named)) is not None:
        # Checked before the token: a source that guessed too often learns nothing more.
        refused = error_response(429, "too many failed authentications; try again later")
        refused.headers["Retry-After"] = str(wait)
        return refused
    secrets = request.app[SECRETS]
    account = None
    if given.startswith("Bearer "):
        account = staff.authenticate(request.app[DB], secrets.staff_token_key,
                                     secrets.admin_token, given[len("Bearer "):].strip(),
                                     request.app[CLOCK]())
    if account is None:
        throttle.failed(src, named)
        failed_auth(request, "wrong, expired or revoked head-office token")
        raise ApiError(401, "head-office API needs 'Authorization: Bearer <staff token>'"
                            " (valid, not expired, not revoked)")
    request[STAFF] = account
    if request.match_info.http_exception is None:  # a route matched: 404 and 405 pass on
        roles = admitted(request.match_info.handler)
        if roles is None or account.role not in roles:
            resource = request.match_info.route.resource
            where = resource.canonical if resource is not None else request.path
            what = f"{request.method} {where}"
            auth_failures.record_refused_role(request.app[DB], request.app[CLOCK](),
                                              account.id, str(account.role), what)
            raise ApiError(403, f"role {account.role} may not {what}")
    return await handler(request)
