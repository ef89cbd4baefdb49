"""The rule sets this till holds, compiled once per version, and which of them is in effect.

A version is received ahead of its activation time and takes effect at that moment by the
till's own clock, so a till that went offline after receiving it switches on time too.
Compiling a big rule set takes a good part of a second: it happens in a worker thread when
the version arrives (or at start-up), and the compiled set is swapped in in one step, so a
receipt being priced never waits for it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlite_utils

from agent.clock import utcnow
from protocol.rules import RuleSet, compile_ruleset
from protocol.ruleset_wire import SignedRuleSet
from protocol.wire import pack, unpack

log = logging.getLogger(__name__)


class NoRuleSet(RuntimeError):
    pass


@dataclass(frozen=True)
class Received:
    """A verified rule set, compiled and ready to store (made off the event loop)."""

    version: int
    activates_at: str  # the later of the central's activation time and the doc's valid_from
    packed: bytes
    compiled: RuleSet


def prepare(rs: SignedRuleSet) -> Received:
    """Compile and encode a received rule set; pure CPU, for a worker thread.
    Raises protocol.rules.RuleSetError for a document the engine cannot take."""
    compiled = compile_ruleset(rs.doc)
    activates = _parse(rs.activates_at)
    if compiled.valid_from is not None and compiled.valid_from > activates:
        activates = compiled.valid_from  # never before the document says it is valid
    return Received(rs.version, activates.astimezone(UTC).isoformat(timespec="seconds"),
                    pack(rs.doc), compiled)


def _parse(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class RulesCache:
    def __init__(self, db: sqlite_utils.Database,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._compiled: dict[int, RuleSet] = {}
        # (version, activation) of every version held, ascending by version.
        self._schedule: list[tuple[int, datetime]] = [
            (v, _parse(a)) for v, a in db.execute(
                "SELECT version, activates_at FROM rulesets ORDER BY version")]

    def version(self) -> int | None:
        """The newest version held (in effect or not): what the till tells the central."""
        return self._schedule[-1][0] if self._schedule else None

    def active_version(self, now: datetime | None = None) -> int | None:
        """The newest version whose activation time has come; if none has (a first rule
        set and a clock a little behind the central's), the oldest held: a till sells."""
        if not self._schedule:
            return None
        now = now or self.clock()
        due = [v for v, at in self._schedule if at <= now]
        return max(due) if due else self._schedule[0][0]

    def next_activation(self, now: datetime | None = None) -> dict | None:
        """The version waiting for its activation time, for the till's status."""
        now = now or self.clock()
        active = self.active_version(now)
        waiting = [(v, at) for v, at in self._schedule
                   if active is not None and v > active and at > now]
        if not waiting:
            return None
        v, at = min(waiting, key=lambda w: w[1])
        return {"version": v, "activates_at": at.isoformat()}

    def get(self, version: int | None = None,
            now: datetime | None = None) -> tuple[int, RuleSet]:
        """The given version, else the one in effect at `now`."""
        version = self.active_version(now) if version is None else version
        if version is None:
            raise NoRuleSet("no rule set yet: the till has not reached the central once")
        compiled = self._compiled.get(version)
        if compiled is None:
            # Only after a start-up without warm(), or for a version no longer in effect.
            compiled = self._install(version, self._compile_stored(version))
        return version, compiled

    def _compile_stored(self, version: int) -> RuleSet:
        row = self.db.execute("SELECT doc FROM rulesets WHERE version = ?",
                              [version]).fetchone()
        if row is None:
            raise NoRuleSet(f"rule set version {version} is not on this till")
        return compile_ruleset(unpack(row[0]))

    def _install(self, version: int, compiled: RuleSet) -> RuleSet:
        self._compiled[version] = compiled
        # Versions superseded for good are dropped: a big one is tens of megabytes.
        active = self.active_version()
        for v in [v for v in self._compiled if active is not None and v < active]:
            del self._compiled[v]
        # A big rule set is tens of thousands of long-lived objects: keep them out of
        # the collector's way, so pricing a receipt never pays for a full GC pass.
        gc.freeze()
        return compiled

    async def warm(self) -> None:
        """Compile the version in effect and any waiting for their time, in a thread."""
        active = self.active_version()
        for version, _ in self._schedule:
            if active is not None and version >= active and version not in self._compiled:
                row = self.db.execute("SELECT doc FROM rulesets WHERE version = ?",
                                      [version]).fetchone()
                compiled = await asyncio.to_thread(lambda doc=row[0]: compile_ruleset(unpack(doc)))
                self._install(version, compiled)

    def add(self, received: Received) -> bool:
        """Store a version and swap it in, in one step on the event loop; False if the
        till already holds it or a newer one."""
        newest = self.version()
        if newest is not None and received.version <= newest:
            return False
        self.db.execute(
            "INSERT OR REPLACE INTO rulesets (version, activates_at, doc, received_at)"
            " VALUES (?, ?, ?, ?)",
            [received.version, received.activates_at, received.packed,
             self.clock().isoformat(timespec="seconds")])
        self._schedule.append((received.version, _parse(received.activates_at)))
        self._install(received.version, received.compiled)
        return True
