"""Failed authentications: one alert per source and period, and a throttle on wrong tokens.

A forger sending a thousand bad batches a second used to write a thousand critical alerts a
second, burying the real ones. Now the first failure from a source in a period writes the
alert and the rest count on it (`count`, `last_at`), so head office sees one line per
attacker and period, with how many attempts. Requests refused because the caller's role
does not admit them are counted the same way, per staff account.

`Throttle` slows down guessing of head-office credentials: a source that fails `limit` times
within `window` is refused (429) until the window lets its failures go. Where a credential
names an account, failures are also counted per account, but they only ever refuse sources
that have failed themselves: an attacker cannot lock the owner of a named account out by
failing against it from elsewhere.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

from central.alerts import raise_alert
from central.clock import iso
from central.db import Connection

PERIOD = timedelta(minutes=10)
KIND = "security"


def record(conn: Connection, now: datetime, source: str, what: str,
           till_id: str | None = None) -> None:
    """Count one failed authentication from `source`; outside a transaction it commits."""
    _count(conn, now, source, f"failed authentication from {source}: {what}", "critical",
           till_id)


def record_refused_role(conn: Connection, now: datetime, account_id: str, role: str,
                        what: str) -> None:
    """Count one request a staff account's role does not admit: a stolen token tried
    beyond its role, or someone looking where they should not. One alert per account and
    period; a person who clicked the wrong page once is a warning, not an incident."""
    _count(conn, now, f"account {account_id}",
           f"staff account {account_id} (role {role}) refused: {what}", "warning", None)


def _count(conn: Connection, now: datetime, source: str, message: str, severity: str,
           till_id: str | None) -> None:
    row = conn.execute(
        "SELECT id FROM alerts WHERE kind = ? AND source = ? AND at > ? AND acked_at IS NULL"
        " ORDER BY id DESC LIMIT 1",
        (KIND, source, iso(now - PERIOD)),
    ).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE alerts SET count = count + 1, last_at = ?, message = ?,"
            " till_id = COALESCE(?, till_id) WHERE id = ?",
            (iso(now), message, till_id, row["id"]),
        )
        return
    raise_alert(conn, now, KIND, message, severity=severity, till_id=till_id, source=source)


class Throttle:
    """Failures per source and per account in sliding windows, in memory, bounded."""

    def __init__(self, *, limit: int = 10, account_limit: int = 20, window: float = 300.0,
                 max_tracked: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.account_limit = account_limit
        self.window = window
        self.max_tracked = max_tracked
        self.clock = clock
        self._sources: OrderedDict[str, deque[float]] = OrderedDict()
        self._accounts: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, source: str, account: str | None = None) -> int | None:
        """Seconds this source must wait before trying again, or None if it may try now."""
        now = self.clock()
        mine = self._recent(self._sources, source, now)
        if len(mine) >= self.limit:
            return self._wait(mine, self.limit, now)
        if account is not None and mine:
            theirs = self._recent(self._accounts, account, now)
            if len(theirs) >= self.account_limit:
                return self._wait(theirs, self.account_limit, now)
        return None

    def failed(self, source: str, account: str | None = None) -> None:
        now = self.clock()
        self._add(self._sources, source, now)
        if account is not None:
            self._add(self._accounts, account, now)

    def _recent(self, table: OrderedDict[str, deque[float]], key: str,
                now: float) -> deque[float]:
        times = table.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del table[key]
        return times

    def _add(self, table: OrderedDict[str, deque[float]], key: str, now: float) -> None:
        times = table.setdefault(key, deque())
        table.move_to_end(key)
        times.append(now)
        # A bounded memory however many sources an attacker spoofs: the oldest go first.
        while len(times) > 4 * max(self.limit, self.account_limit):
            times.popleft()
        while len(table) > self.max_tracked:
            table.popitem(last=False)

    def _wait(self, times: deque[float], limit: int, now: float) -> int:
        # Until enough of the failures leave the window to bring the count under the limit.
        release = times[len(times) - limit] + self.window
        return max(1, int(release - now + 0.999))
