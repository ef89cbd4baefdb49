"""Who may call the POS API: the POS software, proven by a shared secret, over the loopback.

The secret is a file the agent and the POS software can read and nobody else: in production
`/etc/tillpoint/pos-secret`, mode 0640, owner root, group `tillpoint-pos` (the POS software's
user and the agent are members). It is made at enrolment (or at the agent's first start) and
replaced by `tillpoint agent pos-secret rotate`; the running agent notices the new file by
itself, so a rotation needs no restart. The POS sends it as `Authorization: Bearer <secret>`.

Three checks run before any handler, in this order:
- the Host header names the loopback with the agent's own port (421 otherwise): a web page
  that rebinds its DNS name to 127.0.0.1 still sends its own name as the Host;
- the secret (401 without it or with a wrong one), compared in constant time;
- a request that may carry a body is JSON (415 otherwise): a browser's form post or
  `text/plain` fetch, which needs no CORS preflight, is never read.
"""

from __future__ import annotations

import grp
import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

POS_SECRET_MODE = 0o640  # the owner writes, the POS software's group reads, others nothing
LOOPBACK_NAMES = ("127.0.0.1", "[::1]", "localhost")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class PosSecretError(RuntimeError):
    pass


def write_pos_secret(path: Path, group: str | None = None) -> None:
    """A new secret at `path`, group-readable by `group` (if given), replacing any old one.

    Written under a temporary name and renamed, so a reader sees the old file or the new one,
    never half of one; the mode is set at creation, so it is never readable by others.
    """
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PosSecretError(f"no group {group!r}: create it (groupadd {group})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, POS_SECRET_MODE)
    try:
        os.fchmod(fd, POS_SECRET_MODE)  # the umask must not widen or narrow it
        if gid != -1:
            os.fchown(fd, -1, gid)
        os.write(fd, secrets.token_urlsafe(32).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_pos_secret(path: Path) -> str:
    """The secret, refusing a file that anyone outside its owner and group could read."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o007:
            raise PosSecretError(f"{path} is readable by others (mode {mode:o}); chmod 640 it")
        secret = path.read_text().strip()
    except FileNotFoundError:
        raise PosSecretError(f"no POS secret at {path}: run `tillpoint agent pos-secret"
                             " rotate`") from None
    except PermissionError:
        raise PosSecretError(f"cannot read the POS secret at {path}: this user must be in"
                             " its group") from None
    if len(secret) < 32:
        raise PosSecretError(f"the POS secret at {path} is too short")
    return secret


class PosSecret:
    """The agent's view of the secret file: read again whenever the file is replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._secret = read_pos_secret(path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> str:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            try:
                self._secret = read_pos_secret(self.path)
                self._stamp = stamp
                log.info("POS secret at %s replaced: the new one is in force", self.path)
            except PosSecretError as e:
                # Keep the old one rather than lock the POS out over a botched edit.
                log.error("POS secret not reloaded: %s", e)
        return self._secret

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.current().encode())


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def host_is_loopback(host: str | None, port: int | None) -> bool:
    if not host:
        return False
    name, sep, host_port = host.rpartition(":")
    if not sep or name not in LOOPBACK_NAMES or not host_port.isdigit():
        return False
    return port is None or int(host_port) == port


def _local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def guard_middleware(secret: PosSecret) -> Callable:
    @web.middleware
    async def guard(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if not host_is_loopback(request.headers.get("Host"), _local_port(request)):
            return _error(421, "the POS API answers only to a Host naming the loopback"
                               " (127.0.0.1, [::1] or localhost) with its port")
        presented = _bearer(request)
        if presented is None or not secret.matches(presented):
            return _error(401, "the POS secret is missing or wrong: send"
                               " 'Authorization: Bearer <secret>' from the pos-secret file",
                          **{"WWW-Authenticate": 'Bearer realm="tillpoint-pos"'})
        if request.method in BODY_METHODS and request.content_type != "application/json":
            return _error(415, "the POS API takes JSON only: Content-Type: application/json")
        return await handler(request)

    return guard


__all__ = ["PosSecret", "PosSecretError", "guard_middleware", "host_is_loopback",
           "read_pos_secret", "write_pos_secret"]
