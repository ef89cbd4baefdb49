"""The central's secrets, each in its own file of mode 0600 under the data directory."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.signing import load_or_generate_key, read_secret_file, write_secret_file


@dataclass(frozen=True)
class CentralSecrets:
    signing_key: Ed25519PrivateKey  # signs rule sets for tills
    card_secret: bytes  # keys card tokens; shared with enrolled tills
    admin_token: str  # bearer token of the head-office API


def _load_or_create(path: Path, make: str) -> str:
    if not path.exists():
        write_secret_file(path, make.encode())
    return read_secret_file(path).decode().strip()


def load_or_create(data_dir: Path) -> CentralSecrets:
    return CentralSecrets(
        signing_key=load_or_generate_key(data_dir / "central.key"),
        card_secret=bytes.fromhex(_load_or_create(data_dir / "card-secret", secrets.token_hex(32))),
        admin_token=_load_or_create(data_dir / "admin-token", secrets.token_urlsafe(32)),
    )
