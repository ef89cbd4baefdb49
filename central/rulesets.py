"""Rule sets: published by head office after validation, served signed to tills."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.clock import iso
from central.db import transaction
from protocol.rules import compile_ruleset, default_ruleset_doc
from protocol.ruleset_wire import SignedRuleSet, encode_ruleset


def publish(
    conn: sqlite3.Connection,
    doc: dict,
    actor: str,
    now: datetime,
    activates_at: datetime | None = None,
) -> int:
    """Validate and store a new version; raises protocol.rules.RuleSetError naming the place."""
    with transaction(conn):
        current = conn.execute("SELECT MAX(version) FROM rulesets").fetchone()[0] or 0
        doc = {**doc, "version": current + 1}
        compile_ruleset(doc)
        conn.execute(
            "INSERT INTO rulesets (version, doc, published_at, activates_at, actor)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                current + 1,
                json.dumps(doc, sort_keys=True),
                iso(now),
                iso(activates_at or now),
                actor,
            ),
        )
    return current + 1


def ensure_default(conn: sqlite3.Connection, now: datetime) -> None:
    if conn.execute("SELECT 1 FROM rulesets").fetchone() is None:
        publish(conn, default_ruleset_doc(), "system", now)


def current(conn: sqlite3.Connection) -> SignedRuleSet:
    row = conn.execute("SELECT * FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    return SignedRuleSet(row["version"], row["activates_at"], json.loads(row["doc"]))


def signed_current(conn: sqlite3.Connection, key: Ed25519PrivateKey) -> bytes:
    return encode_ruleset(key, current(conn))


_tiers_by_version: dict[int, dict | None] = {}


def current_tiers(conn: sqlite3.Connection) -> dict | None:
    """The tiers section of the newest rule set, parsed once per version (a rule set with
    thousands of campaigns is megabytes of JSON; deltas need only this part)."""
    version = conn.execute("SELECT MAX(version) FROM rulesets").fetchone()[0]
    if version not in _tiers_by_version:
        doc = conn.execute("SELECT doc FROM rulesets WHERE version = ?", (version,)).fetchone()
        _tiers_by_version[version] = json.loads(doc[0]).get("tiers") if doc else None
    return _tiers_by_version[version]
