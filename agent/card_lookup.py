"""Finding the customer behind a card number without helping anyone guess card numbers.

A POS (or whoever holds its secret) could type card numbers as fast as the API answers,
and every miss used to make the till ask the central. Now:
- typed numbers are limited per till (`TypedLimit`: 10 a minute by default), then 429 with
  Retry-After; cards presented at the reader are not, a person has to present them;
- a miss asks the central for new customers only within a budget (`Refresher`: a few pulls a
  minute, one at a time, a miss during a pull waits for that pull); past it, the till's own
  cache answers "unknown";
- the central hears of guessing once, not per miss: refusals are counted and the count is
  reported (`GuessingReport`), which the central keeps as one alert per till and period.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

TYPED_PER_MINUTE = 10
REFRESHES_PER_MINUTE = 6
WINDOW_S = 60.0
REPORT_KIND = "typed-card-limit"


class SlidingWindow:
    """Events in the last `window` seconds, at most `limit` of them."""

    def __init__(self, limit: int, window: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._times: deque[float] = deque()

    def retry_after(self) -> int | None:
        """Whole seconds until one more is allowed, or None if it is allowed now."""
        now = self.clock()
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return None
        return max(1, math.ceil(self.window - (now - self._times[0])))

    def take(self) -> None:
        self._times.append(self.clock())


class TypedLimit(SlidingWindow):
    """Typed card numbers per till; every attempt counts, found or not."""

    def __init__(self, per_minute: int = TYPED_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(per_minute, WINDOW_S, clock)


class Refresher:
    """Asks the central for new customers after a miss, within a budget, one pull at a time."""

    def __init__(self, refresh: Callable[[], Awaitable[None]],
                 per_minute: int = REFRESHES_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._refresh = refresh
        self._budget = SlidingWindow(per_minute, WINDOW_S, clock)
        self._running: asyncio.Future[None] | None = None
        self.asked = 0  # pulls made for misses, for the status

    async def after_miss(self) -> bool:
        """Pull once if the budget allows (or join the pull under way); False if the cache
        must answer by itself."""
        if self._running is not None and not self._running.done():
            await asyncio.shield(self._running)
            return True
        if self._budget.retry_after() is not None:
            return False
        self._budget.take()
        self.asked += 1
        self._running = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._running)
        return True


class GuessingReport:
    """Typed numbers refused for the limit, not yet reported to the central."""

    def __init__(self) -> None:
        self.unreported = 0
        self.misses = 0  # typed numbers that found nobody, since the last report
        self.refused_total = 0

    def refused(self) -> None:
        self.unreported += 1
        self.refused_total += 1

    def missed(self) -> None:
        self.misses += 1

    def take(self) -> dict[str, int | str] | None:
        """What to send the central now, or None if nothing was refused since the last."""
        if not self.unreported:
            return None
        report: dict[str, int | str] = {"kind": REPORT_KIND, "count": self.unreported,
                                        "misses": self.misses}
        self.unreported = self.misses = 0
        return report

    def put_back(self, report: dict[str, int | str]) -> None:
        """The central could not be told: counted again for the next try."""
        self.unreported += int(report["count"])
        self.misses += int(report["misses"])
