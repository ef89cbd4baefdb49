"""Where the central's card keys come from, and the cards they no longer cover.

The key ring is read once, at start, from a systemd credential (`LoadCredentialEncrypted=
card-keys:...`, found in $CREDENTIALS_DIRECTORY) or else from a key file outside the data
directory (`--card-keys`, by default `<data>-keys/card-keys`): never from beside the
database whose card tokens it keys. A card secret left in the data directory by an older
version becomes key version 1 there, and is removed from the data directory.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from central import ledger
from central.clock import iso
from central.db import Connection, transaction
from protocol.card_keys import (
    CardKeyError,
    CardKeyring,
    check_outside,
    new_key,
    read_ring,
    write_ring,
)
from protocol.signing import read_secret_file

CREDENTIAL = "card-keys"
LEGACY_SECRET = "card-secret"  # where versions before key rings kept the one key


def default_key_file(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}-keys" / "card-keys"


def credential_file() -> Path | None:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(creds) / CREDENTIAL if creds else None
    return path if path is not None and path.exists() else None


def key_file_ring(data_dir: Path, key_file: Path, now: datetime) -> CardKeyring:
    """The ring in `key_file`, made (version 1, or the legacy secret) if there is none."""
    check_outside(key_file, data_dir, "the data directory")
    if not key_file.exists():
        legacy = data_dir / LEGACY_SECRET
        secret = bytes.fromhex(read_secret_file(legacy).decode().strip()) \
            if legacy.exists() else None
        write_ring(key_file, CardKeyring([new_key(1, now, secret=secret)]))
        # The tokens' key no longer lives beside them.
        legacy.unlink(missing_ok=True)
    return read_ring(key_file)


def load(data_dir: Path, key_file: Path | None, now: datetime) -> CardKeyring:
    """The keys in their lifetime, newest first; CardKeyError if there is none."""
    cred = credential_file()
    if cred is not None:
        ring = read_ring(cred)
    else:
        ring = key_file_ring(data_dir, key_file or default_key_file(data_dir), now)
    active = ring.active(now)
    if not active:
        raise CardKeyError("every card key has retired: make a new one with "
                           "`tillpoint central card-key rotate`")
    return active


def retire_cards(conn: Connection, ring: CardKeyring, now: datetime) -> int:
    """Cards whose key has retired: no till can recognise them any more. They stay with
    their customer (account, balance, last four digits) until the customer links the card
    again; their customers are marked changed, so tills drop the dead tokens."""
    versions = ring.versions
    marks = ",".join("?" * len(versions))
    with transaction(conn):
        rows = conn.execute(
            f"SELECT token, customer_id FROM cards WHERE retired_at IS NULL"
            f" AND key_version NOT IN ({marks})", versions).fetchall()
        for r in rows:
            conn.execute("UPDATE cards SET retired_at = ? WHERE token = ?",
                         (iso(now), r["token"]))
            ledger.touch(conn, r["customer_id"])
    return len(rows)


__all__ = ["CREDENTIAL", "CardKeyError", "default_key_file", "load", "retire_cards"]
