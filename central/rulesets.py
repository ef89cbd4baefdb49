"""Rule sets: published by head office after validation, served signed to tills."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import campaign_budgets
from central.clock import iso
from central.db import transaction
from protocol import bounds
from protocol.rules import compile_ruleset, default_ruleset_doc
from protocol.ruleset_wire import SignedRuleSet, encode_ruleset
from protocol.wire import pack, unpack


def publish(
    conn: sqlite3.Connection,
    doc: dict,
    actor: str,
    now: datetime,
    activates_at: datetime | None = None,
) -> int:
    """Validate and store a new version; raises protocol.rules.RuleSetError naming the place,
    or bounds.OutOfBounds for a value no till could store or decode."""
    with transaction(conn):
        current = conn.execute("SELECT MAX(version) FROM rulesets").fetchone()[0] or 0
        doc = {**doc, "version": current + 1}
        check_publishable(doc)
        compile_ruleset(doc)
        conn.execute(
            "INSERT INTO rulesets (version, doc, published_at, activates_at, actor, tiers)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                current + 1,
                json.dumps(doc, sort_keys=True),
                iso(now),
                iso(activates_at or now),
                actor,
                # With the programme's zone: tier windows are calendar periods of it.
                json.dumps({**doc["tiers"], **_zone(doc)}) if doc.get("tiers") else None,
            ),
        )
        campaign_budgets.store_budgets(conn, current + 1, doc)
    return current + 1


def check_publishable(doc: dict) -> None:
    """What every till will decode must be within bounds and survive the wire as it is:
    checked before it is stored, since once published every till's rule pull carries it."""
    bounds.check_tree(doc, "doc")
    if unpack(pack(doc)) != doc:
        raise bounds.OutOfBounds("doc", "does not survive encoding for the tills")


def _zone(doc: dict) -> dict[str, str]:
    zone = (doc.get("programme") or {}).get("time_zone")
    return {"time_zone": zone} if zone else {}


def ensure_default(conn: sqlite3.Connection, now: datetime) -> None:
    if conn.execute("SELECT 1 FROM rulesets").fetchone() is None:
        publish(conn, default_ruleset_doc(), "system", now)


def current(conn: sqlite3.Connection) -> SignedRuleSet:
    row = conn.execute("SELECT * FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    return SignedRuleSet(row["version"], row["activates_at"], json.loads(row["doc"]))


def signed_current(conn: sqlite3.Connection, key: Ed25519PrivateKey) -> bytes:
    return encode_ruleset(key, current(conn))


def encode_signed(rs: SignedRuleSet, key: Ed25519PrivateKey) -> bytes:
    return encode_ruleset(key, rs)


def current_tiers(conn: sqlite3.Connection) -> dict | None:
    """The tiers section of the newest rule set."""
    row = conn.execute("SELECT tiers FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    return json.loads(row["tiers"]) if row and row["tiers"] else None
