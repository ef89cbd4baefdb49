"""Keep a device session alive: reconnect with backoff after a failure or a cable pull.

The session coroutine opens the port, calls `connected()` once the device is usable, and
returns (or raises) when the connection is gone. The supervisor logs the first failure of a
run of failures, stays quiet for the repeats, and resets the backoff after a success. The
backoff is capped low on purpose: trying to open a missing port costs one failed open(), and
the device must be back in use within 2 s of reappearing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Session = Callable[[Callable[[], None]], Awaitable[None]]


class Supervisor:
    def __init__(
        self,
        name: str,
        session: Session,
        *,
        initial_delay: float = 0.05,
        max_delay: float = 0.5,
        factor: float = 2.0,
    ) -> None:
        self.name = name
        self._session = session
        self._initial = initial_delay
        self._max = max_delay
        self._factor = factor
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        self.connects = 0
        self.sessions_lost = 0  # every session that failed or ended, for monitoring
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"supervisor {self.name}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _connected(self) -> None:
        if self.failures:
            log.info("%s: connected after %d failed attempts", self.name, self.failures)
        else:
            log.info("%s: connected", self.name)
        self.failures = 0
        self.connects += 1
        self.last_error = None

    async def _run(self) -> None:
        delay = self._initial
        while True:
            connects_before = self.connects
            try:
                await self._session(self._connected)
                reason = "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # type and message only: a device session never puts card data in errors
                reason = f"{type(exc).__name__}: {exc}"
            if self.connects != connects_before:
                delay = self._initial  # it worked for a while: start the backoff again
                log.warning("%s: lost (%s); reconnecting", self.name, reason)
            else:
                if self.failures == 0:
                    log.warning("%s: cannot connect (%s); retrying", self.name, reason)
                else:
                    log.debug("%s: still cannot connect (%s)", self.name, reason)
                self.failures += 1
            self.last_error = reason
            self.sessions_lost += 1
            await asyncio.sleep(delay)
            delay = min(self._max, delay * self._factor)
