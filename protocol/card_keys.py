"""Versioned card keys: the keyed-hash keys that turn card numbers into card tokens.

Tokens are made with the newest key and recognised under every older key still in its
lifetime, so a rotation never loses a card: a card last seen under an older key is found by
trying the versions newest first, and is then re-keyed under the newest. A key past its
lifetime is retired: its tokens are no longer recognised anywhere (the customer keeps the
account and links the card again; README, "Card data").

A key ring is kept as JSON, never beside the data it protects: the central reads it from a
systemd credential or a key file outside its data directory, a till from a key file outside
its state directory.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.cards import card_token
from protocol.signing import sign, verify
from protocol.wire import InvalidMessage, pack, require, unpack

DEFAULT_LIFETIME_DAYS = 730  # a key makes tokens for two years, then retires
KEY_BYTES = 32


class CardKeyError(ValueError):
    """A key ring that cannot be read or used; the message never holds key material."""


@dataclass(frozen=True)
class CardKey:
    version: int
    secret: bytes = field(repr=False)
    created_at: datetime
    retires_at: datetime

    def retired(self, now: datetime) -> bool:
        return now >= self.retires_at

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "secret": self.secret.hex(),
                "created_at": self.created_at.isoformat(),
                "retires_at": self.retires_at.isoformat()}

    @classmethod
    def from_dict(cls, d: Any) -> CardKey:
        try:
            key = cls(int(d["version"]), bytes.fromhex(d["secret"]),
                      _utc(d["created_at"]), _utc(d["retires_at"]))
        except (KeyError, TypeError, ValueError):
            raise CardKeyError("a card key needs version, secret (hex), created_at and"
                               " retires_at") from None
        if key.version < 1 or len(key.secret) < 16:
            raise CardKeyError(f"card key version {key.version}: bad version or short secret")
        return key


def _utc(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("naive time")
    return moment.astimezone(UTC)


class CardKeyring:
    """Card keys by version, newest first. Immutable; rotation makes a new ring."""

    def __init__(self, keys: Iterable[CardKey] = ()) -> None:
        self.keys: tuple[CardKey, ...] = tuple(sorted(keys, key=lambda k: -k.version))
        if len({k.version for k in self.keys}) != len(self.keys):
            raise CardKeyError("two card keys with the same version")

    def __repr__(self) -> str:
        return f"CardKeyring(versions={self.versions})"

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __iter__(self) -> Iterator[CardKey]:
        return iter(self.keys)

    @property
    def versions(self) -> list[int]:
        return [k.version for k in self.keys]

    @property
    def newest(self) -> CardKey:
        if not self.keys:
            raise CardKeyError("no card key: this till has not received one from the central")
        return self.keys[0]

    def token(self, number: str) -> tuple[int, str]:
        """The token a card gets now: (version, token) under the newest key."""
        key = self.newest
        return key.version, card_token(key.secret, number)

    def tokens(self, number: str) -> list[tuple[int, str]]:
        """The card's token under every key, newest first: what identification tries."""
        return [(k.version, card_token(k.secret, number)) for k in self.keys]

    def active(self, now: datetime) -> CardKeyring:
        """Without the keys past their lifetime."""
        return CardKeyring(k for k in self.keys if not k.retired(now))

    def rotated(self, now: datetime, lifetime_days: int = DEFAULT_LIFETIME_DAYS) -> CardKeyring:
        """A new newest key; retired keys are dropped, and with them their secrets."""
        if lifetime_days < 1:
            raise CardKeyError("a card key's lifetime must be at least one day")
        version = (self.keys[0].version + 1) if self.keys else 1
        new = new_key(version, now, lifetime_days)
        return CardKeyring([new, *self.active(now).keys])

    def to_dict(self) -> dict[str, Any]:
        return {"keys": [k.to_dict() for k in self.keys]}

    @classmethod
    def from_dict(cls, d: Any) -> CardKeyring:
        if not isinstance(d, dict) or not isinstance(d.get("keys"), list):
            raise CardKeyError('a card key ring is {"keys": [...]}')
        return cls(CardKey.from_dict(k) for k in d["keys"])


def new_key(version: int, now: datetime, lifetime_days: int = DEFAULT_LIFETIME_DAYS,
            secret: bytes | None = None) -> CardKey:
    return CardKey(version, secret or secrets.token_bytes(KEY_BYTES), now,
                   now + timedelta(days=lifetime_days))


def read_ring(path: Path) -> CardKeyring:
    try:
        if path.stat().st_mode & 0o077:
            raise CardKeyError(f"{path} is readable by others: chmod 600 it")
        return CardKeyring.from_dict(json.loads(path.read_bytes()))
    except (OSError, ValueError) as e:
        if isinstance(e, CardKeyError):
            raise
        raise CardKeyError(f"cannot read the card keys at {path}: {type(e).__name__}") from None


def write_ring(path: Path, ring: CardKeyring) -> None:
    """Atomically, mode 0600, in a directory of mode 0700 made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(ring.to_dict(), f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def check_outside(path: Path, data_dir: Path, what: str) -> None:
    """Refuse a key file inside the directory of the data it protects."""
    p, d = path.resolve(), data_dir.resolve()
    if p == d or d in p.parents:
        raise CardKeyError(f"the card keys ({path}) must not live in {what} ({data_dir}): "
                           "keep them in a directory of their own or a systemd credential")


def encode_for_till(key: Ed25519PrivateKey, till_id: str, ring: CardKeyring,
                    now: datetime) -> bytes:
    """The central's answer to one till's pull: the keys, signed and addressed to it.

    Signed so a till takes keys only from its central; confidential only by the transport,
    which is why the central sends them only over TLS or the loopback.
    """
    body = pack({"till_id": till_id, "issued_at": now.isoformat(),
                 "keys": [k.to_dict() for k in ring]})
    return pack({"body": body, "sig": sign(key, body)})


def decode_for_till(data: bytes, central_key: Ed25519PublicKey, till_id: str,
                    now: datetime) -> CardKeyring:
    """The keys in their lifetime; raises BadSignature, InvalidMessage or CardKeyError."""
    outer = unpack(data)
    body_bytes = require(outer, "body", bytes)
    verify(central_key, body_bytes, require(outer, "sig", bytes))
    body = unpack(body_bytes)
    if require(body, "till_id", str) != till_id:
        raise InvalidMessage("card keys addressed to another till")
    return CardKeyring.from_dict({"keys": require(body, "keys", list)}).active(now)
