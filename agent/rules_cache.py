"""The rule sets this till holds, compiled once per version."""

from __future__ import annotations

import gc

import sqlite_utils

from protocol.rules import RuleSet, compile_ruleset
from protocol.wire import unpack


class NoRuleSet(RuntimeError):
    pass


class RulesCache:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._compiled: dict[int, RuleSet] = {}

    def version(self) -> int | None:
        return self.db.execute("SELECT MAX(version) FROM rulesets").fetchone()[0]

    def get(self, version: int | None = None) -> tuple[int, RuleSet]:
        """The given version (a return is priced by its sale's rules), else the newest."""
        version = self.version() if version is None else version
        if version is None:
            raise NoRuleSet("no rule set yet: the till has not reached the central once")
        if version not in self._compiled:
            row = self.db.execute("SELECT doc FROM rulesets WHERE version = ?",
                                  [version]).fetchone()
            if row is None:
                raise NoRuleSet(f"rule set version {version} is not on this till")
            self._compiled[version] = compile_ruleset(unpack(row[0]))
            # A big rule set is tens of thousands of long-lived objects: keep them out of
            # the collector's way, so pricing a receipt never pays for a full GC pass.
            gc.freeze()
        return version, self._compiled[version]
