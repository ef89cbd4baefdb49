"""Card readers: line readers (track 2, barcodes) and STX/ETX EM4100 RFID readers.

Framing is pure (``line_read``, ``rfid_frame``); ``CardReader`` writes the frames to its port.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable
from dataclasses import dataclass

STX = b"\x02"
ETX = b"\x03"
SUFFIXES = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n", "none": b""}
RFID_REPEATS = 3
RFID_REPEAT_INTERVAL_S = 0.06

WriteFn = Callable[[bytes], bool]


class ReadError(ValueError):
    """A presentation this reader kind cannot produce."""


@dataclass(frozen=True)
class ReaderConfig:
    kind: str = "line"  # "line" | "rfid"
    suffix: str = "cr"
    stx_etx: bool = False
    aim: str = ""


def line_read(data: str, config: ReaderConfig) -> bytes:
    """One read of a line reader: ``[STX] [AIM] data [ETX] suffix``, ASCII."""
    if not data.isascii() or any(c in "\r\n\x02\x03" for c in data):
        raise ReadError("line reads are printable ASCII without CR, LF, STX or ETX")
    body = (config.aim + data).encode("ascii")
    if config.stx_etx:
        body = STX + body + ETX
    return body + SUFFIXES[config.suffix]


def track2(data: str) -> str:
    """Track 2 as a reader sends it: ``;PAN=YYMM...?`` (sentinels added if missing)."""
    inner = data.removeprefix(";").removesuffix("?")
    if not inner or any(c not in string.digits + "=" for c in inner):
        raise ReadError("track 2 holds digits and '=' only")
    return f";{inner}?"


def rfid_frame(tag: str) -> bytes:
    """EM4100 read: STX, ten hex digits, two hex digits of XOR checksum, ETX (14 bytes)."""
    if len(tag) != 10 or any(c not in string.hexdigits for c in tag):
        raise ReadError("an EM4100 tag is 10 hex digits (version + 8 digits of id)")
    tag = tag.upper()
    checksum = 0
    for byte in bytes.fromhex(tag):
        checksum ^= byte
    return STX + f"{tag}{checksum:02X}".encode("ascii") + ETX


class CardReader:
    def __init__(self, config: ReaderConfig, write: WriteFn) -> None:
        self.config = config
        self._write = write

    def frames_for(self, kind: str, value: str) -> list[bytes]:
        if kind == "raw_hex":
            try:
                return [bytes.fromhex(value)]
            except ValueError as error:
                raise ReadError(f"raw_hex: {error}") from None
        if kind == "tag":
            if self.config.kind != "rfid":
                raise ReadError("this reader is a line reader: present a barcode or track2")
            return [rfid_frame(value)] * RFID_REPEATS
        if self.config.kind != "line":
            raise ReadError("this reader is an RFID reader: present a tag")
        if kind == "track2":
            return [line_read(track2(value), self.config)]
        if kind == "barcode":
            return [line_read(value, self.config)]
        raise ReadError(f"unknown presentation {kind!r}")

    async def present(self, frames: list[bytes]) -> bytes:
        """Send the frames; RFID repeats come a short while apart, as the tag stays put."""
        sent = bytearray()
        for i, frame in enumerate(frames):
            if i:
                await asyncio.sleep(RFID_REPEAT_INTERVAL_S)
            if not self._write(frame):
                break
            sent += frame
        return bytes(sent)
