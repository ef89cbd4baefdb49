"""The central's secrets: its signing key, admin token and the key of staff tokens' hashes,
each in its own file of mode 0600 under the data directory, and the card keys, which never
live there (central.card_keys)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import card_keys
from protocol.card_keys import CardKeyring
from protocol.signing import load_or_generate_key, read_secret_file, write_secret_file


@dataclass(frozen=True)
class CentralSecrets:
    signing_key: Ed25519PrivateKey  # signs rule sets for tills
    card_keys: CardKeyring  # key card tokens, newest first; every till holds them too
    admin_token: str  # bearer token of the head-office API's `admin-token` account
    staff_token_key: bytes  # keys the hashes of staff tokens (central.staff)


def _load_or_create(path: Path, make: str) -> str:
    if not path.exists():
        write_secret_file(path, make.encode())
    return read_secret_file(path).decode().strip()


def staff_token_key(data_dir: Path) -> bytes:
    """The key of staff tokens' hashes; the CLI's `staff add` reads it too."""
    return bytes.fromhex(_load_or_create(data_dir / "staff-token-key", secrets.token_hex(32)))


def load_or_create(data_dir: Path, card_keys_file: Path | None, now: datetime) -> CentralSecrets:
    return CentralSecrets(
        signing_key=load_or_generate_key(data_dir / "central.key"),
        card_keys=card_keys.load(data_dir, card_keys_file, now),
        admin_token=_load_or_create(data_dir / "admin-token", secrets.token_urlsafe(32)),
        staff_token_key=staff_token_key(data_dir),
    )
