"""Who this till is: its key, its id at the central, and where its card keys live.

Files in the state directory: `till.key` (mode 0600), `till.json` (the till id, store, the
central's URL and its public key, pinned at enrolment, the path of the card key file and of
the CA that signs the central's certificate, if not a public one). The card keys live
outside the state directory (agent.card_keys).
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agent import card_keys
from protocol import enrolment
from protocol.card_keys import CardKeyError, CardKeyring, check_outside, new_key, write_ring
from protocol.signing import (
    generate_key,
    load_key,
    parse_public_key,
    public_key_hex,
    read_secret_file,
)

LEGACY_SECRET = "card-secret"  # where tills enrolled before key rings kept the one key


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
    card_keys_path: Path
    central_ca: Path | None = None  # trusted for the central's certificate, if given

    def ssl_context(self) -> ssl.SSLContext | None:
        return tls_context(self.central_ca)


class InsecureCentral(RuntimeError):
    pass


def tls_context(ca: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca)) if ca else None


def check_transport(url: str, insecure: bool) -> None:
    """Refuse plain HTTP to a central off this machine, unless told `--insecure`: the till's
    traffic (and with it what the central sends) would cross the network in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme != "http" or not parts.hostname:
        raise InsecureCentral(f"the central's URL must be https://...: {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not insecure:
        raise InsecureCentral(
            f"refusing plain http:// to {host}: give the central's https:// URL, or --insecure"
            " (then the central sends no card keys, and cards cannot be identified)")


def load(state_dir: Path) -> TillIdentity:
    info_path = state_dir / "till.json"
    if not info_path.exists():
        raise NotEnrolled(f"this till is not enrolled: run `tillpoint agent enroll` ({state_dir})")
    info = json.loads(info_path.read_text())
    keys_path = Path(info.get("card_keys") or card_keys.default_path(state_dir))
    _move_legacy_secret(state_dir, keys_path)
    return TillIdentity(
        till_id=info["till_id"],
        store=info["store"],
        central_url=info["central_url"],
        key=load_key(state_dir / "till.key"),
        central_key=parse_public_key(info["central_public_key"]),
        card_keys_path=keys_path,
        central_ca=Path(info["central_ca"]) if info.get("central_ca") else None,
    )


def _move_legacy_secret(state_dir: Path, keys_path: Path) -> None:
    """A till enrolled before key rings kept its card secret in the state directory: it
    becomes key version 1 in the key file, and leaves the state directory."""
    legacy = state_dir / LEGACY_SECRET
    if not legacy.exists():
        return
    if not keys_path.exists():
        # its dates are the till's guess: the central's own arrive with the next pull
        secret = bytes.fromhex(read_secret_file(legacy).decode().strip())
        write_ring(keys_path, CardKeyring([new_key(1, datetime.now(UTC), secret=secret)]))
    legacy.unlink()


async def enroll(state_dir: Path, central_url: str, token: str, name: str, *,
                 card_keys_path: Path | None = None, central_ca: Path | None = None,
                 insecure: bool = False) -> TillIdentity:
    """Create the till's key and register it with a one-time token."""
    if (state_dir / "till.json").exists():
        raise EnrolmentFailed(f"already enrolled; remove {state_dir / 'till.json'} to re-enrol")
    try:
        check_transport(central_url, insecure)
    except InsecureCentral as e:
        raise EnrolmentFailed(str(e)) from None
    keys_path = card_keys_path or card_keys.default_path(state_dir)
    try:
        check_outside(keys_path, state_dir, "the state directory")
    except CardKeyError as e:
        raise EnrolmentFailed(str(e)) from None
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    key_path = state_dir / "till.key"
    key = load_key(key_path) if key_path.exists() else generate_key(key_path)
    central_url = central_url.rstrip("/")
    ssl_ctx = tls_context(central_ca)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        try:
            async with session.post(
                f"{central_url}/sync/v1/enroll", ssl=ssl_ctx if ssl_ctx else True,
                json={"token": token, "public_key": public_key_hex(key), "name": name,
                      "proof": enrolment.prove(key, token)},
            ) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise EnrolmentFailed(f"central refused enrolment ({resp.status}): "
                                          f"{body.get('error', body)}")
        except aiohttp.ClientError as e:
            raise EnrolmentFailed(f"cannot reach the central at {central_url}: {e}") from None
    if "card_keys" in body:
        write_ring(keys_path, CardKeyring.from_dict(body["card_keys"]))
    info = {
        "till_id": body["till_id"],
        "store": body["store"],
        "central_url": central_url,
        "central_public_key": body["central_public_key"],
        "card_keys": str(keys_path.resolve()),
        **({"central_ca": str(central_ca.resolve())} if central_ca else {}),
    }
    tmp = state_dir / "till.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(state_dir / "till.json")
    return load(state_dir)
