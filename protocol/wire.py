"""Canonical msgpack: the bytes that are hashed and signed must be the same on both ends."""

from __future__ import annotations

from typing import Any

import msgpack

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class InvalidMessage(ValueError):
    """Bytes that are not a well-formed message of the expected shape."""


def _canonical(obj: Any) -> Any:
    # Sorted keys make the encoding independent of dict insertion order, so a hash or a
    # signature computed on one machine verifies on another.
    if isinstance(obj, dict):
        return {k: _canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        raise TypeError("floats have no place in money or points messages")
    return obj


def pack(obj: Any) -> bytes:
    return msgpack.packb(_canonical(obj), use_bin_type=True)


def unpack(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    if len(data) > max_bytes:
        raise InvalidMessage(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as e:
        raise InvalidMessage(f"not valid msgpack: {type(e).__name__}") from None
    except Exception as e:  # msgpack raises a few undocumented types on truncated input
        raise InvalidMessage(f"not valid msgpack: {type(e).__name__}") from None


def require(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    """A field of a decoded message, with a clear error when it is missing or mistyped."""
    if not isinstance(obj, dict):
        raise InvalidMessage("expected a map")
    if key not in obj:
        raise InvalidMessage(f"missing field {key!r}")
    value = obj[key]
    # bool is an int subclass; a boolean where a number belongs is a malformed message.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InvalidMessage(f"field {key!r} has the wrong type")
    if not isinstance(value, kind):
        raise InvalidMessage(f"field {key!r} has the wrong type")
    return value
