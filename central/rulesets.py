"""Rule sets: published by head office after validation, served signed to tills."""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import campaign_budgets, campaigns
from central.clock import iso
from central.db import Connection, transaction
from protocol import bounds, ruleset_delta
from protocol.rules import compile_ruleset, default_ruleset_doc
from protocol.ruleset_wire import SignedRuleSet, encode_ruleset
from protocol.wire import MAX_MESSAGE_BYTES, pack


def publish(
    conn: Connection,
    doc: dict,
    actor: str,
    now: datetime,
    activates_at: datetime | None = None,
) -> int:
    """Validate and store a new version; raises protocol.rules.RuleSetError naming the place,
    or bounds.OutOfBounds for a value no till could store or decode.

    The version takes effect at `activates_at`, else at the document's `valid_from`, else
    now; tills receive it ahead and switch at that moment, online or not."""
    with transaction(conn):
        # One publisher at a time numbers the version and brings the campaigns table in line.
        conn.dialect.lock(conn, campaigns.PUBLISH_LOCK)
        current = conn.execute("SELECT MAX(version) FROM rulesets").fetchone()[0] or 0
        doc = {**doc, "version": current + 1,
               "holdout_salt": doc.get("holdout_salt") or _holdout_salt(conn, current)}
        text = check_publishable(doc)
        compiled = compile_ruleset(doc)
        activates_at = activation(activates_at or now, compiled.valid_from)
        conn.execute(
            "INSERT INTO rulesets (version, doc, published_at, activates_at, actor, tiers)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                current + 1,
                text,
                iso(now),
                iso(activates_at),
                actor,
                # With the programme's zone: tier windows are calendar periods of it.
                json.dumps({**doc["tiers"], **_zone(doc)}) if doc.get("tiers") else None,
            ),
        )
        campaign_budgets.store_budgets(conn, current + 1, doc)
        campaigns.adopt(conn, doc, current + 1, actor, now)
    return current + 1


def _holdout_salt(conn: Connection, current: int) -> str:
    """The salt of control groups (protocol.rules.holdout) for a document that names none:
    the newest version's, so that who is held out stays the same from version to version;
    for the first, a random one, so that nobody can work out the groups from the ids."""
    row = conn.execute("SELECT doc FROM rulesets WHERE version = ?", (current,)).fetchone()
    salt = json.loads(row[0]).get("holdout_salt") if row else None
    return salt if isinstance(salt, str) and salt else secrets.token_hex(16)


def activation(activates_at: datetime, valid_from: datetime | None) -> datetime:
    """When a version takes effect: the later of its publication's activation time and the
    document's own `valid_from` (a document never applies before it says it is valid)."""
    return max(activates_at, valid_from) if valid_from else activates_at


def check_publishable(doc: dict) -> str:
    """What every till will decode must be within bounds and survive the wire as it is:
    checked before it is stored, since once published every till's rule pull carries it.
    Returns the document's JSON text, as stored.

    check_tree refuses every value msgpack could not carry exactly (floats, integers beyond
    2^53, lone surrogates, non-string keys, other types), so no pack/unpack round trip is
    needed. What is left is the size a till will decode: msgpack is never longer than this
    JSON text (ASCII-escaped, with separators), so only a text near the limit is packed."""
    bounds.check_tree(doc, "doc")
    text = json.dumps(doc, sort_keys=True)
    if len(text) > WIRE_LIMIT and len(pack(doc)) > WIRE_LIMIT:
        raise bounds.OutOfBounds("doc", f"is larger than the {WIRE_LIMIT} bytes a till decodes")
    return text


# A till decodes at most MAX_MESSAGE_BYTES; the signed envelope takes a few hundred.
WIRE_LIMIT = MAX_MESSAGE_BYTES - 4096


def _zone(doc: dict) -> dict[str, str]:
    zone = (doc.get("programme") or {}).get("time_zone")
    return {"time_zone": zone} if zone else {}


def ensure_default(conn: Connection, now: datetime) -> None:
    if conn.execute("SELECT 1 FROM rulesets").fetchone() is None:
        publish(conn, default_ruleset_doc(), "system", now)
    elif not campaigns.adopted(conn):
        # A database from before the campaigns table: it starts as the newest rule set says.
        with transaction(conn):
            conn.dialect.lock(conn, campaigns.PUBLISH_LOCK)
            if not campaigns.adopted(conn):
                rs = current(conn)
                campaigns.adopt(conn, rs.doc, rs.version, "system", now)


def current(conn: Connection) -> SignedRuleSet:
    row = conn.execute("SELECT * FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    return SignedRuleSet(row["version"], row["activates_at"], json.loads(row["doc"]))


def current_version(conn: Connection) -> int | None:
    return conn.execute("SELECT MAX(version) FROM rulesets").fetchone()[0]


def signed_current(conn: Connection, key: Ed25519PrivateKey) -> bytes:
    return encode_ruleset(key, current(conn))


# Deltas are made from the last few versions only: a till further behind gets the whole
# document, and a till's claim to hold an old version costs the central no more than that.
DELTA_SPAN = 16


class SignedRuleSets:
    """Each version's signed bytes, encoded and signed once per version and key.

    A published version never changes, so a till's pull of it costs one lookup here instead
    of parsing, encoding and signing a document of a megabyte or more each time."""

    def __init__(self) -> None:
        self._signed: dict[tuple[int, bytes], bytes] = {}
        self._deltas: dict[tuple[int, int, bytes], bytes | None] = {}

    def delta(self, conn: Connection, base: int, version: int,
              key: Ed25519PrivateKey) -> bytes | None:
        """What changed from `base` to `version`, signed (protocol.ruleset_delta), once per
        pair; None where it would be more than half the document, or `base` is not kept."""
        from protocol.signing import public_key_hex
        cache_key = (base, version, public_key_hex(key).encode())
        if cache_key not in self._deltas:
            rows = {r["version"]: r for r in conn.execute(
                "SELECT version, activates_at, doc FROM rulesets WHERE version IN (?, ?)",
                (base, version))}
            blob = None
            if base in rows and version in rows:
                doc = json.loads(rows[version]["doc"])
                delta = ruleset_delta.make(json.loads(rows[base]["doc"]), doc, base, version,
                                           rows[version]["activates_at"])
                blob = ruleset_delta.encode(key, delta)
                if "campaigns" not in doc or len(blob) * 2 > len(rows[version]["doc"]):
                    blob = None  # not worth it: the whole document is sent
            # Tills pull the newest version only: deltas to older ones need not stay.
            self._deltas = {k: v for k, v in self._deltas.items() if k[1] == version}
            self._deltas[cache_key] = blob
        return self._deltas[cache_key]

    def get(self, conn: Connection, version: int, key: Ed25519PrivateKey) -> bytes:
        from protocol.signing import public_key_hex
        cache_key = (version, public_key_hex(key).encode())
        blob = self._signed.get(cache_key)
        if blob is None:
            row = conn.execute("SELECT version, activates_at, doc FROM rulesets"
                               " WHERE version = ?", (version,)).fetchone()
            blob = encode_ruleset(key, SignedRuleSet(row["version"], row["activates_at"],
                                                     json.loads(row["doc"])))
            # Only the newest version is ever served: older ones need not stay.
            self._signed = {cache_key: blob}
        return blob


def current_tiers(conn: Connection) -> dict | None:
    """The tiers section of the newest rule set."""
    row = conn.execute("SELECT tiers FROM rulesets ORDER BY version DESC LIMIT 1").fetchone()
    return json.loads(row["tiers"]) if row and row["tiers"] else None
