"""Ed25519 keys of tills and of the central: creation, files with tight permissions, signatures."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SECRET_FILE_MODE = 0o600


class BadSignature(ValueError):
    """A signature that does not verify, or a public key that is not one."""


def write_secret_file(path: Path, data: bytes) -> None:
    """Write a secret so that it is never readable by others, not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_secret_file(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
    return path.read_bytes()


def generate_key(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    write_secret_file(path, raw.hex().encode("ascii"))
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(read_secret_file(path).decode()))


def load_or_generate_key(path: Path) -> Ed25519PrivateKey:
    return load_key(path) if path.exists() else generate_key(path)


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        .hex()
    )


def parse_public_key(hex_key: str) -> Ed25519PublicKey:
    try:
        raw = bytes.fromhex(hex_key)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError):
        raise BadSignature("not an Ed25519 public key (64 hex digits expected)") from None


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(public_key: Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise BadSignature("signature does not verify") from None
