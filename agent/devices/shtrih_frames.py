"""Shtrih-M link frames: `STX LEN CMD[1|2] DATA... LRC`, pure bytes in and out.

No asyncio, no serial: the link layer feeds whatever bytes it has to `parse_frame` and gets
back a whole frame and the bytes after it, or learns that more bytes are needed, or gets an
`InvalidFrame` telling it how many bytes to skip to re-synchronise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

STX = 0x02
ENQ = 0x05
ACK = 0x06
NAK = 0x15

#: commands of the `FF xx` family are two bytes on the wire, `FF` first
EXTENDED_PREFIX = 0xFF


class InvalidFrame(ValueError):
    """Bytes that cannot be a frame; `skip` bytes of the input are garbage."""

    def __init__(self, reason: str, skip: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.skip = skip


@dataclass(frozen=True)
class Frame:
    """One frame. `command` is 0x00..0xFE, or 0xFF00..0xFFFF for the extended family."""

    command: int
    data: bytes

    @property
    def command_bytes(self) -> bytes:
        if self.command > 0xFF:
            return self.command.to_bytes(2, "big")
        return bytes([self.command])


def lrc(payload: bytes) -> int:
    """XOR of every byte from LEN to the last DATA byte."""
    return reduce(lambda a, b: a ^ b, payload, 0)


def encode_frame(command: int, data: bytes = b"") -> bytes:
    if not 0 <= command <= 0xFFFF or (command > 0xFF and command >> 8 != EXTENDED_PREFIX):
        raise ValueError(f"bad command code {command:#x}")
    if command == EXTENDED_PREFIX:
        raise ValueError("0xFF alone is the prefix of a two-byte command")
    body = Frame(command, data).command_bytes + data
    if not 1 <= len(body) <= 255:
        raise ValueError("frame body must be 1..255 bytes")
    payload = bytes([len(body)]) + body
    return bytes([STX]) + payload + bytes([lrc(payload)])


def parse_frame(buf: bytes) -> tuple[Frame | None, bytes]:
    """Parse one frame at the start of `buf`.

    Returns `(frame, rest)`, or `(None, buf)` when `buf` holds the start of a frame that is not
    complete yet. Raises `InvalidFrame` when `buf` does not start with a valid frame; its
    `skip` says how many bytes to drop before trying again (always at least 1).
    """
    if not buf:
        return None, buf
    if buf[0] != STX:
        # skip up to the next STX in one go rather than byte by byte
        nxt = buf.find(bytes([STX]), 1)
        raise InvalidFrame("no STX", skip=nxt if nxt > 0 else len(buf))
    if len(buf) < 2:
        return None, buf
    length = buf[1]
    if length == 0:
        raise InvalidFrame("zero length")
    end = 2 + length + 1
    if len(buf) < end:
        return None, buf
    payload = bytes(buf[1 : 2 + length])
    if lrc(payload) != buf[end - 1]:
        # skip only the STX: a real frame may start inside what looked like this one
        raise InvalidFrame("bad LRC")
    body = payload[1:]
    if body[0] == EXTENDED_PREFIX:
        if len(body) < 2:
            raise InvalidFrame("truncated two-byte command")
        return Frame((body[0] << 8) | body[1], bytes(body[2:])), bytes(buf[end:])
    return Frame(body[0], bytes(body[1:])), bytes(buf[end:])
