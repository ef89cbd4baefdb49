"""HTTP to the central, every request signed with the till's key."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agent.clock import unix_now
from agent.identity import TillIdentity
from protocol.request_auth import sign_request


class CentralError(Exception):
    """The central answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s  # the central's Retry-After, when it sent one

    @property
    def refused(self) -> bool:
        """A definite no (4xx) as opposed to a failure worth retrying."""
        return self.status is not None and 400 <= self.status < 500


class CentralClient:
    def __init__(self, identity: TillIdentity, timeout_s: float = 10.0) -> None:
        self.identity = identity
        ssl_ctx = identity.ssl_context()
        self._session = aiohttp.ClientSession(
            base_url=identity.central_url + "/",
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(ssl=ssl_ctx) if ssl_ctx else None,
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(self, method: str, path_qs: str, body: bytes = b"",
                      content_type: str = "application/msgpack",
                      timeout_s: float | None = None) -> tuple[bytes, str]:
        """The answer's body and content type; (b"", "") for 304 Not Modified."""
        headers = sign_request(self.identity.key, self.identity.till_id, method, path_qs, body,
                               unix_now())
        if body:
            headers["Content-Type"] = content_type
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
            async with self._session.request(
                method, path_qs.lstrip("/"), data=body or None, headers=headers,
                timeout=timeout,
            ) as resp:
                data = await resp.read()
                if resp.status == 304:
                    return b"", ""  # not modified: what the till holds is current
                if resp.status != 200:
                    raise CentralError(_error_text(data, resp.status), resp.status,
                                       _retry_after(resp.headers.get("Retry-After")))
                return data, resp.content_type
        except aiohttp.ClientError as e:
            raise CentralError(f"central unreachable: {type(e).__name__}: {e}") from None
        except TimeoutError:
            raise CentralError("central did not answer in time") from None

    async def json(self, method: str, path_qs: str, body: bytes = b"") -> Any:
        data, _ = await self.request(method, path_qs, body)
        return json.loads(data)


def _retry_after(value: str | None) -> int | None:
    """Retry-After in seconds; the HTTP-date form is not used by the central, so ignored."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _error_text(data: bytes, status: int) -> str:
    try:
        return f"central answered {status}: {json.loads(data)['error']}"
    except (ValueError, KeyError, TypeError):
        return f"central answered {status}"
