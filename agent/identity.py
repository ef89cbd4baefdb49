"""Who this till is: its key, its id at the central, and the secrets it was given.

Files in the state directory: `till.key` and `card-secret` (mode 0600), `till.json` (the
till id, store, the central's URL and its public key, pinned at enrolment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.signing import (
    generate_key,
    load_key,
    parse_public_key,
    public_key_hex,
    read_secret_file,
    write_secret_file,
)


class NotEnrolled(RuntimeError):
    pass


class EnrolmentFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class TillIdentity:
    till_id: str
    store: str
    central_url: str
    key: Ed25519PrivateKey
    central_key: Ed25519PublicKey
    card_secret: bytes


def load(state_dir: Path) -> TillIdentity:
    info_path = state_dir / "till.json"
    if not info_path.exists():
        raise NotEnrolled(f"this till is not enrolled: run `tillpoint agent enroll` ({state_dir})")
    info = json.loads(info_path.read_text())
    return TillIdentity(
        till_id=info["till_id"],
        store=info["store"],
        central_url=info["central_url"],
        key=load_key(state_dir / "till.key"),
        central_key=parse_public_key(info["central_public_key"]),
        card_secret=bytes.fromhex(read_secret_file(state_dir / "card-secret").decode()),
    )


async def enroll(state_dir: Path, central_url: str, token: str, name: str) -> TillIdentity:
    """Create the till's key and register it with a one-time token."""
    if (state_dir / "till.json").exists():
        raise EnrolmentFailed(f"already enrolled; remove {state_dir / 'till.json'} to re-enrol")
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    key_path = state_dir / "till.key"
    key = load_key(key_path) if key_path.exists() else generate_key(key_path)
    central_url = central_url.rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        try:
            async with session.post(
                f"{central_url}/sync/v1/enroll",
                json={"token": token, "public_key": public_key_hex(key), "name": name},
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise EnrolmentFailed(f"central refused enrolment ({resp.status}): "
                                          f"{body.get('error', body)}")
        except aiohttp.ClientError as e:
            raise EnrolmentFailed(f"cannot reach the central at {central_url}: {e}") from None
    write_secret_file(state_dir / "card-secret", body["card_secret"].encode())
    info = {
        "till_id": body["till_id"],
        "store": body["store"],
        "central_url": central_url,
        "central_public_key": body["central_public_key"],
    }
    tmp = state_dir / "till.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(state_dir / "till.json")
    return load(state_dir)
