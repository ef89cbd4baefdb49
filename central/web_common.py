"""What every central handler shares: app keys, JSON errors, request parsing."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from central import auth_failures
from central.auth_failures import Throttle
from central.client_source import TrustedProxies, source_of
from central.db import Connection, Unavailable
from central.errors import Refused
from central.metrics import CentralMetrics
from central.presence import SmsGateway
from central.secrets_store import CentralSecrets
from protocol import bounds

log = logging.getLogger(__name__)

DB = web.AppKey("db", Connection)
SECRETS = web.AppKey("secrets", CentralSecrets)
CLOCK = web.AppKey("clock", Callable[[], datetime])
TRUSTED_PROXIES = web.AppKey("trusted_proxies", TrustedProxies)
THROTTLE = web.AppKey("auth_throttle", Throttle)
# sends the one-time codes tills ask for (central.presence); None where none is configured
SMS = web.AppKey("sms_gateway", SmsGateway | None)
METRICS = web.AppKey("metrics", CentralMetrics)


def source(request: web.Request) -> str:
    """The caller's address, as far as the central can tell (central.client_source)."""
    return source_of(request, request.app[TRUSTED_PROXIES])


def failed_auth(request: web.Request, what: str, till_id: str | None = None) -> None:
    """Count a failed authentication: one alert per source and period."""
    auth_failures.record(request.app[DB], request.app[CLOCK](), source(request), what, till_id)


class ApiError(Refused):
    """A refusal decided by the web layer itself (bad JSON, a missing field, no token)."""


PROBLEM_JSON = "application/problem+json"


def problem(status: int, message: str) -> dict[str, Any]:
    """An RFC 9457 problem: `type` about:blank, so `title` is the status's own phrase and
    `detail` says what is wrong. `error` repeats the detail: clients written before the
    problem format read it, and keep working."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {"type": "about:blank", "title": title, "status": status, "detail": message,
            "error": message}


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    """Every error the central answers, as application/problem+json (`extra` adds members,
    e.g. retry_after)."""
    return web.json_response({**problem(status, message), **extra}, status=status,
                             content_type=PROBLEM_JSON)


# Retry-After while the database is unavailable: spread over a range, so that when it returns
# the tills (which honour it, agent.retry_policy) do not all arrive in the same second; short,
# so that they are back within seconds of it.
RETRY_AFTER_S = (2, 6)


class _EveryFewSeconds:
    """A warning at most every `period` seconds, with how many were left out: an outage
    answers thousands of requests 503, and the log should say so in a few lines."""

    def __init__(self, period: float = 10.0) -> None:
        self.period = period
        self._last = -period
        self._held = 0

    def note(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.period:
            self._held += 1
            return
        held, self._held, self._last = self._held, 0, now
        log.warning("answered 503, the database is unavailable (%d more like it): %s",
                    held, message)


_unavailable_log = _EveryFewSeconds()


def unavailable_response() -> web.Response:
    """503 with Retry-After: the database cannot serve now; nothing of the request was kept.
    Why is in the central's log only: the driver's text names hosts and statements."""
    wait = random.randint(*RETRY_AFTER_S)
    refused = error_response(503, f"the central's database is unavailable: try again in"
                                  f" {wait} s", retry_after=wait)
    refused.headers["Retry-After"] = str(wait)
    return refused


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON error saying what is wrong; nothing echoes the input."""
    try:
        return await handler(request)
    except Refused as e:
        log.info("%s %s refused: %s", request.method, request.path, e)
        return error_response(e.status, str(e))
    except bounds.OutOfBounds as e:
        # Raised wherever a value enters, in handlers and domain code alike.
        return error_response(400, str(e))
    except Unavailable as e:
        # Whatever the transaction did was rolled back with it: the caller repeats the same
        # request later (a till's batch is idempotent), no process restarts.
        _unavailable_log.note(f"{request.method} {request.path}: {e}")
        return unavailable_response()
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(e.status, e.reason)
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; see the central's log")


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        # Depth is checked on the raw bytes first: json.loads recurses per level.
        body = bounds.loads(await request.read())
    except bounds.BadJson as e:
        raise ApiError(400, str(e)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def field(
    body: dict[str, Any], name: str, kind: type, *, required: bool = True, default: Any = None,
    within: bounds.IntRange | None = None, max_len: int = bounds.MAX_TEXT,
) -> Any:
    """A field of a JSON body: of its type, an int `within` its range (required for ints),
    a string valid Unicode of at most `max_len` characters."""
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, f"field {name!r} is required")
        return default
    value = body[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ApiError(400, f"field {name!r} must be of type {kind.__name__}")
    if kind is int:
        if within is None:
            raise TypeError(f"field {name!r}: an integer field needs its bounds")
        within.check(value, name)
    elif kind is str:
        bounds.text(value, name, max_len=max_len)
    return value


def query_int(request: web.Request, name: str, default: Any,
              within: bounds.IntRange = bounds.COUNTER) -> Any:
    """An integer in the query string: ASCII digits only (int() also takes "١" and "1_0"),
    within its bounds."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not bounds.ascii_digits(raw) or len(raw) > 16:
        raise ApiError(400, f"field {name!r} must be a non-negative integer")
    return within.check(int(raw), name)
