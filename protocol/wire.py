"""Canonical msgpack: the bytes that are hashed and signed must be the same on both ends."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
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


def unpack_in_steps(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES,
                    depth: int = 3, encoded: tuple[str, ...] | None = None) -> Any:
    """unpack(), one small value per call to the decoder: maps and arrays down to `depth`
    are read item by item. For a worker thread decoding a megabyte: one call would hold
    the interpreter for tens of milliseconds, and the event loop with it.

    `encoded`: a path of map keys to an array whose items are left encoded, a list of each
    item's bytes as they are in `data` (checked to be whole msgpack values, not decoded):
    for a rule set whose unchanged campaigns need not be decoded again."""
    if len(data) > max_bytes:
        raise InvalidMessage(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    return _decode_whole(data, lambda unpacker: _read(unpacker, data, depth, (), encoded))


def _decode_whole(data: bytes, read: Callable[[msgpack.Unpacker], Any]) -> Any:
    """`read` one value from all of `data`, nothing after it; any decoder failure becomes
    InvalidMessage (as in unpack(): truncated input raises assorted types)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True,
                                max_buffer_size=max(1, len(data)))
    try:
        unpacker.feed(data)
        value = read(unpacker)
        if unpacker.tell() != len(data):
            raise InvalidMessage("not valid msgpack: ExtraData")
    except InvalidMessage:
        raise
    except Exception as e:
        raise InvalidMessage(f"not valid msgpack: {type(e).__name__}") from None
    return value


def _read(unpacker: msgpack.Unpacker, data: bytes, depth: int, path: tuple[str, ...] = (),
          encoded: tuple[str, ...] | None = None) -> Any:
    first = data[unpacker.tell()]
    is_array = 0x90 <= first <= 0x9F or first in (0xDC, 0xDD)
    if is_array and path == encoded:
        return [_item_bytes(unpacker, data) for _ in range(unpacker.read_array_header())]
    if depth <= 0:
        return unpacker.unpack()
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        out: dict[Any, Any] = {}
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if type(key) not in (str, bytes):  # as strict_map_key checks it below
                raise InvalidMessage("not valid msgpack: a map key that is not a string")
            out[key] = _read(unpacker, data, depth - 1, (*path, key), encoded)
        return out
    if is_array:
        return [_read(unpacker, data, depth - 1) for _ in range(unpacker.read_array_header())]
    return unpacker.unpack()


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_JSON = json.JSONDecoder()


def json_in_steps(data: bytes | str, depth: int = 2) -> Any:
    """json.loads(), one small value per call to the decoder: objects and arrays down to
    `depth` are read item by item. For a worker thread decoding a customer page of a
    thousand members: one json.loads holds the interpreter, and the event loop with it,
    for as long as the whole page takes. Raises ValueError (json.JSONDecodeError) for
    what json.loads refuses."""
    text = data.decode() if isinstance(data, bytes) else data
    value, end = _json_value(text, _skip(text, 0), depth)
    if _skip(text, end) != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, at: int) -> int:
    return _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]


def _json_value(text: str, at: int, depth: int) -> tuple[Any, int]:
    opening = text[at:at + 1]
    if depth <= 0 or opening not in ("{", "["):
        return _JSON.raw_decode(text, at)
    closing = "}" if opening == "{" else "]"
    out: Any = {} if opening == "{" else []
    at = _skip(text, at + 1)
    if text.startswith(closing, at):
        return out, at + 1
    while True:
        if opening == "{":
            if not text.startswith('"', at):
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes",
                                           text, at)
            key, at = _JSON.raw_decode(text, at)
            at = _skip(text, at)
            if not text.startswith(":", at):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
            out[key], at = _json_value(text, _skip(text, at + 1), depth - 1)
        else:
            item, at = _json_value(text, at, depth - 1)
            out.append(item)
        at = _skip(text, at)
        if text.startswith(closing, at):
            return out, at + 1
        if not text.startswith(",", at):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
        at = _skip(text, at + 1)


def _item_bytes(unpacker: msgpack.Unpacker, data: bytes) -> bytes:
    start = unpacker.tell()
    unpacker.skip()
    return data[start:unpacker.tell()]


def map_value_bytes(data: bytes, key: str) -> bytes:
    """The encoded bytes of one value of a map, as they are in `data` (not re-encoded)."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(1, len(data)))
    unpacker.feed(data)
    for _ in range(unpacker.read_map_header()):
        if unpacker.unpack() == key:
            start = unpacker.tell()
            unpacker.skip()
            return data[start:unpacker.tell()]
        unpacker.skip()
    raise InvalidMessage(f"missing field {key!r}")


class Undecoded(Mapping[str, Any]):
    """Stands for a map that `unpack_map_skipping` checked to be a map but did not decode.

    Empty to read; equal only to itself, so it is never mistaken for a decoded empty map.
    """

    def __getitem__(self, key: str) -> Any:
        raise KeyError(f"{key!r}: this map was skipped, not decoded")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "UNDECODED"


UNDECODED = Undecoded()


def unpack_map_skipping(data: bytes, skip: str) -> dict[str, Any]:
    """Decode a map, except the value under `skip`: checked to be a map, left undecoded.

    The value comes back as UNDECODED. Skipping lets a reader that never looks at a bulky
    field (the central's ingest and an entry's detail: four fifths of its bytes, hundreds of
    nodes) pay a scan of its bytes instead of building it. What is skipped is still checked
    to be well-framed msgpack, but not that its strings are UTF-8 or its map keys strings:
    whoever decodes it later must expect InvalidMessage.
    """
    def read(unpacker: msgpack.Unpacker) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == skip:
                try:
                    size = unpacker.read_map_header()
                except ValueError:  # msgpack's word for "not a map here"
                    raise InvalidMessage(f"field {skip!r} must be a map") from None
                for _ in range(2 * size):
                    unpacker.skip()
                out[key] = UNDECODED
            else:
                out[key] = unpacker.unpack()
        return out

    return _decode_whole(data, read)


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
