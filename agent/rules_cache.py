"""The rule sets this till holds, compiled once per version, and which of them is in effect.

A version is received ahead of its activation time and takes effect at that moment by the
till's own clock, so a till that went offline after receiving it switches on time too.
Compiling a big rule set takes a good part of a second: it happens in a worker thread when
the version arrives (or at start-up), and the compiled set is swapped in in one step, so a
receipt being priced never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from agent.clock import utcnow
from agent.store import path_of
from protocol.rules import CompiledCampaigns, RuleSet, compile_encoded, compile_ruleset
from protocol.ruleset_wire import SignedRuleSet
from protocol.wire import pack, unpack, unpack_in_steps

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
    campaigns: CompiledCampaigns | None = None  # for the next version to reuse


# Where a rule set's campaigns are in the signed body ({"version", "activates_at", "doc"}):
# decoded only if a version this till holds did not carry the same bytes.
CAMPAIGNS_IN_BODY = ("doc", "campaigns")


def prepare(rs: SignedRuleSet, packed: bytes | None = None,
            known: CompiledCampaigns | None = None) -> Received:
    """Compile a received rule set; pure CPU, for a worker thread. `packed`: the document
    as received, if at hand (else encoded here). A document whose campaigns are still
    encoded (decoded with CAMPAIGNS_IN_BODY) compiles only those not in `known`.
    Raises protocol.rules.RuleSetError for a document the engine cannot take."""
    with collector_paused():
        compiled, campaigns = compile_encoded(rs.doc, unpack, known)
        # Out of the collector's sight before it resumes: its first full pass would walk
        # the whole new rule set, holding the interpreter (and the event loop) meanwhile.
        gc.freeze()
    activates = _parse(rs.activates_at)
    if compiled.valid_from is not None and compiled.valid_from > activates:
        activates = compiled.valid_from  # never before the document says it is valid
    return Received(rs.version, activates.astimezone(UTC).isoformat(timespec="seconds"),
                    pack(rs.doc) if packed is None else packed, compiled, campaigns)


_gc_lock = threading.Lock()
_gc_pauses = 0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Decoding, compiling and freeing a rule set make and drop hundreds of thousands of
    objects; with the cyclic collector on, its full passes over them hold the interpreter
    for tens of milliseconds at a time, so the event loop would stall although the work
    runs in another thread. (Paused for the whole process while any such work runs.)"""
    global _gc_pauses
    with _gc_lock:
        _gc_pauses += 1
        gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0:
                gc.enable()


def release_stepwise(holder: list[Any]) -> None:
    """Free a big structure (a superseded rule set, a decoded document) one object at a
    time; in a worker thread, given the only reference in a one-item list.

    Dropping the last reference to a big rule set frees it in one cascade that holds the
    interpreter for tens of milliseconds. Here every container of it is held in a list,
    parents first, and let go one by one: each release frees one container, and the
    thread yields the interpreter to the event loop between them as any thread does."""
    with collector_paused():
        _release(holder)
    _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the freed megabytes back to the system (glibc keeps them otherwise, and a till's
    memory would grow with every rule set it ever received)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# How deep the release looks: a rule set's campaigns (or a document's) are three levels
# down, and each frees quickly on its own; walking every object would cost more than it saves.
RELEASE_DEPTH = 3


def _release(holder: list[Any]) -> None:
    order: list[Any] = [holder.pop()]
    seen = {id(order[0])}
    level = [order[0]]
    for _ in range(RELEASE_DEPTH):
        below = []
        for obj in level:
            for ref in gc.get_referents(obj):
                if id(ref) not in seen and _owned(ref):
                    seen.add(id(ref))
                    below.append(ref)
        order.extend(below)
        level = below
    order.reverse()
    while order:
        order.pop()


def _owned(obj: object) -> bool:
    """Containers that belong to a rule set: never a class, module or function, whose
    referents reach the whole interpreter."""
    kind = type(obj)
    return kind in (dict, list, tuple, set, frozenset) or (
        gc.is_tracked(obj) and kind.__module__.startswith("protocol.rules"))


def _parse(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class RulesCache:
    def __init__(self, db: sqlite_utils.Database,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self._compiled: dict[int, RuleSet] = {}
        self._campaigns: CompiledCampaigns | None = None  # the newest version's, by encoding
        self._teardowns: set[asyncio.Future[None]] = set()
        # (version, activation) of every version held, ascending by version.
        self._schedule: list[tuple[int, datetime]] = [
            (v, _parse(a)) for v, a in db.execute(
                "SELECT version, activates_at FROM rulesets ORDER BY version")]

    def stored(self, version: int) -> bytes | None:
        """A version's document as received (packed), for a delta to build on."""
        row = self.db.execute("SELECT doc FROM rulesets WHERE version = ?",
                              [version]).fetchone()
        return row[0] if row else None

    def known_campaigns(self) -> CompiledCampaigns | None:
        """The newest version's compiled campaigns, for compiling the next (prepare)."""
        return self._campaigns

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
        # Versions superseded for good are dropped: a big one is tens of megabytes, freed
        # in a worker thread (see release_stepwise).
        active = self.active_version()
        for v in [v for v in self._compiled if active is not None and v < active]:
            self._retire(self._compiled.pop(v))
        # A big rule set is tens of thousands of long-lived objects: keep them out of
        # the collector's way, so pricing a receipt never pays for a full GC pass.
        gc.freeze()
        return compiled

    def _retire(self, compiled: RuleSet) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a tool, a test): dropped here
        holder = [compiled]
        del compiled
        self._teardowns.add(loop.run_in_executor(None, release_stepwise, holder))
        self._teardowns = {t for t in self._teardowns if not t.done()}

    async def warm(self) -> None:
        """Compile the version in effect and any waiting for their time, in a thread."""
        active = self.active_version()
        for version, _ in self._schedule:
            if active is not None and version >= active and version not in self._compiled:
                row = self.db.execute("SELECT doc FROM rulesets WHERE version = ?",
                                      [version]).fetchone()
                compiled, campaigns = await asyncio.to_thread(_compile_packed, row[0])
                self._install(version, compiled)
                if version == self.version():
                    self._campaigns = campaigns

    async def add(self, received: Received) -> bool:
        """Store a version (in a worker thread) and swap it in, in one step on the event
        loop; False if the till already holds it or a newer one."""
        newest = self.version()
        if newest is not None and received.version <= newest:
            return False
        row = [received.version, received.activates_at, received.packed,
               self.clock().isoformat(timespec="seconds")]
        path = path_of(self.db)
        if path:
            # A megabyte or more, written and synced on a connection of the thread's own.
            await asyncio.to_thread(_store, path, row)
        else:
            self.db.execute(_INSERT, row)  # an in-memory store: nothing to wait for
        self._schedule.append((received.version, _parse(received.activates_at)))
        self._install(received.version, received.compiled)
        self._campaigns = received.campaigns
        return True


def _compile_packed(packed: bytes) -> tuple[RuleSet, CompiledCampaigns]:
    """A stored document, compiled (in a worker thread) with its campaigns by encoding."""
    with collector_paused():
        doc = unpack_in_steps(packed, depth=2, encoded=CAMPAIGNS_IN_BODY[1:])
        compiled, campaigns = compile_encoded(doc, unpack)
        gc.freeze()  # as in prepare()
        return compiled, campaigns


_INSERT = ("INSERT OR REPLACE INTO rulesets (version, activates_at, doc, received_at)"
           " VALUES (?, ?, ?, ?)")


def _store(path: str, row: list[Any]) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        with conn:
            conn.execute(_INSERT, row)
    finally:
        conn.close()
