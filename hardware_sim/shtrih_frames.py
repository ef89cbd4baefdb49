"""Pure codec for Shtrih-M frames and field encodings: bytes in, values out, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

STX = 0x02
ENQ = 0x05
ACK = 0x06
NAK = 0x15

TEXT_ENCODING = "cp1251"
LINE_WIDTHS = (32, 36, 40, 48)


class InvalidFrame(ValueError):
    """A frame that starts with STX but cannot be taken (bad LRC, zero length).

    ``rest`` holds the bytes after the rejected frame, so a caller can carry on parsing.
    """

    def __init__(self, message: str, rest: bytes = b"") -> None:
        super().__init__(message)
        self.rest = rest


def lrc(data: bytes) -> int:
    """XOR of every byte from LEN up to the last DATA byte."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def build_frame(payload: bytes) -> bytes:
    """STX LEN payload LRC, where payload is CMD (1 or 2 bytes) followed by DATA."""
    if not 1 <= len(payload) <= 255:
        raise ValueError(f"payload length {len(payload)} outside 1..255")
    body = bytes([len(payload)]) + payload
    return bytes([STX]) + body + bytes([lrc(body)])


def parse_frame(buf: bytes) -> tuple[bytes | None, bytes]:
    """Take one frame from the start of ``buf``.

    ``buf`` must begin with STX. Returns ``(payload, rest)``, or ``(None, buf)`` when the frame
    is not complete yet. Raises ``InvalidFrame`` for a zero length or a bad LRC; the exception's
    ``rest`` attribute holds the bytes after the rejected frame.
    """
    if not buf or buf[0] != STX:
        raise ValueError("buffer does not start with STX")
    if len(buf) < 2:
        return None, buf
    length = buf[1]
    if length == 0:
        raise InvalidFrame("zero frame length", bytes(buf[2:]))
    end = 2 + length + 1
    if len(buf) < end:
        return None, buf
    body = buf[1 : 2 + length]
    if lrc(body) != buf[end - 1]:
        raise InvalidFrame(
            f"bad LRC {buf[end - 1]:02X}, expected {lrc(body):02X}", bytes(buf[end:])
        )
    return bytes(buf[2 : 2 + length]), bytes(buf[end:])


@dataclass(frozen=True)
class Command:
    """A host command: code (``0xFF01`` style for the two-byte family) and DATA."""

    code: int
    data: bytes

    @property
    def code_bytes(self) -> bytes:
        return self.code.to_bytes(2 if self.code > 0xFF else 1, "big")


def split_command(payload: bytes) -> Command:
    """Split a frame payload into command code and DATA (``FF xx`` is a two-byte code)."""
    if not payload:
        raise InvalidFrame("empty payload")
    if payload[0] == 0xFF:
        if len(payload) < 2:
            return Command(0xFF, b"")
        return Command(0xFF00 | payload[1], payload[2:])
    return Command(payload[0], payload[1:])


def int_le(data: bytes) -> int:
    return int.from_bytes(data, "little")


def int_le_signed(data: bytes) -> int:
    return int.from_bytes(data, "little", signed=True)


def to_le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def decode_text(data: bytes) -> str:
    """cp1251 text, NUL padding removed (any padding length is accepted)."""
    return data.split(b"\x00", 1)[0].decode(TEXT_ENCODING, errors="replace").rstrip()


def encode_text(text: str, width: int) -> bytes:
    """cp1251 text NUL-padded to ``width`` (truncated if longer)."""
    raw = text.encode(TEXT_ENCODING, errors="replace")[:width]
    return raw + b"\x00" * (width - len(raw))
