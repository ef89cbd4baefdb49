"""Sales channels: the web shop's and the app's credentials, and the virtual till of each.

A channel is made by an admin (`POST /api/v1/channels`), which prints its token once:
`<channel id>:<secret>`, kept as HMAC-SHA256 under the staff-token key exactly as staff
tokens are (central.staff says why keyed and not slow). The channel sends it as a bearer
token on `/channel/v1/...`; it acts only on orders it made itself.

Each channel has a virtual till: a row of `tills` with its own id, epoch and hash chain,
under which its orders are journalled (central.channel_orders says why). It has no key a
batch could be signed with (its `public_key` is not hex, so the sync API refuses it as a
till whose key is weak): only the central writes its journal.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central.clock import iso
from central.db import Connection, Row, transaction
from central.errors import Refused
from central.staff import token_hash
from protocol import bounds

KINDS = ("web", "app")  # the rules' channels (protocol.rules) other than "till"
# Virtual tills' ids: the central mints every till id ("till_..." for enrolled ones), so no
# enrolled till can carry this prefix.
VIRTUAL_TILL_PREFIX = "vt_"
NAME_LEN = 100


def is_virtual_till(till_id: str) -> bool:
    """Whether the till is a channel's: its entries were priced by the central itself."""
    return till_id.startswith(VIRTUAL_TILL_PREFIX)


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    kind: str  # web or app: the channel the rules see
    store: str  # the store id the rule set knows it by (zone, region, channel campaigns)
    till_id: str
    created_at: str
    created_by: str
    revoked_at: str | None

    @property
    def epoch(self) -> str:
        """The virtual till's one epoch: its journal is never restored from a backup."""
        return f"channel-{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "store": self.store,
                "till_id": self.till_id, "created_at": self.created_at,
                "created_by": self.created_by, "revoked_at": self.revoked_at}


_COLUMNS = "id, name, kind, store, till_id, created_at, created_by, revoked_at"


def _channel(r: Row) -> Channel:
    return Channel(*(r[c.strip()] for c in _COLUMNS.split(",")))


def add(conn: Connection, key: bytes, name: object, kind: object, store: object,
        created_by: str, now: datetime) -> tuple[Channel, str]:
    """A new channel, its virtual till and its token (shown this once, kept as its hash)."""
    bounds.text(name, "name", required=True, max_len=NAME_LEN)
    bounds.text(store, "store", required=True)
    if kind not in KINDS:
        raise Refused(400, f"field 'kind' must be one of {', '.join(KINDS)}")
    channel_id = "ch_" + secrets.token_hex(5)
    till_id = VIRTUAL_TILL_PREFIX + channel_id
    token = f"{channel_id}:{secrets.token_urlsafe(32)}"
    with transaction(conn):
        conn.execute(
            "INSERT INTO tills (id, name, store, public_key, enrolled_at)"
            " VALUES (?, ?, ?, ?, ?)",
            # Not a key: nothing can sign as this till (public_key_of refuses it).
            (till_id, f"channel {str(name).strip()}", str(store).strip(),
             f"virtual:{channel_id}", iso(now)))
        conn.execute(
            f"INSERT INTO channels ({_COLUMNS}, token_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
            (channel_id, str(name).strip(), kind, str(store).strip(), till_id, iso(now),
             created_by, token_hash(key, token)))
    return get(conn, channel_id), token


def get(conn: Connection, channel_id: str) -> Channel:
    row = conn.execute(f"SELECT {_COLUMNS} FROM channels WHERE id = ?",
                       (channel_id,)).fetchone()
    if row is None:
        raise Refused(404, "no such channel")
    return _channel(row)


def list_channels(conn: Connection) -> list[Channel]:
    return [_channel(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM channels ORDER BY id")]


def revoke(conn: Connection, channel_id: str, now: datetime) -> Channel:
    """Its token stops working at once; its orders stay journalled and returnable at tills."""
    get(conn, channel_id)
    conn.execute("UPDATE channels SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                 (iso(now), channel_id))
    return get(conn, channel_id)


def authenticate(conn: Connection, key: bytes, credential: str) -> Channel | None:
    """The channel a bearer credential proves, if it is not revoked; None otherwise."""
    channel_id, sep, _ = credential.partition(":")
    if not sep:
        return None
    row = conn.execute(f"SELECT {_COLUMNS}, token_hash FROM channels WHERE id = ?",
                       (channel_id[:64],)).fetchone()
    if row is None or not hmac.compare_digest(row["token_hash"], token_hash(key, credential)):
        return None
    channel = _channel(row)
    return None if channel.revoked_at is not None else channel
