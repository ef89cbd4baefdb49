"""Encoders and decoders of the Shtrih-M commands Tillpoint uses; pure, bytes only.

Each `encode_*` returns a whole frame ready for the link. Each reply decoder takes the reply
`Frame` and returns its fields, or raises `DeviceError` with the device's error byte.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from agent.devices.shtrih_frames import Frame, encode_frame

DEVICE_TYPE = 0xFC
SHORT_STATUS = 0x10
OPEN_SHIFT = 0xE0
OPEN_RECEIPT = 0x8D
SALE = 0x80
RETURN_SALE = 0x82
DISCOUNT = 0x86
PRINT_TEXT = 0x17
CLOSE_RECEIPT = 0x85
CANCEL_RECEIPT = 0x88
CONTINUE_PRINTING = 0xB0
X_REPORT = 0x40
Z_REPORT = 0x41
FS_STATUS = 0xFF01
FS_FIND_DOCUMENT = 0xFF0A

#: replies of these commands carry no operator byte after the error byte
NO_OPERATOR_REPLY = frozenset({DEVICE_TYPE, FS_STATUS, FS_FIND_DOCUMENT})

RECEIPT_SALE = 0
RECEIPT_PURCHASE = 1
RECEIPT_RETURN_SALE = 2
RECEIPT_RETURN_PURCHASE = 3

TAPE_CONTROL = 0x01
TAPE_RECEIPT = 0x02

LINE_WIDTHS = (32, 36, 40, 48)
MAX_AMOUNT = (1 << 40) - 1


class DeviceError(Exception):
    """The device answered with a non-zero error byte."""

    def __init__(self, command: int, code: int) -> None:
        super().__init__(f"command {command:#x} failed with error {code:#04x}")
        self.command = command
        self.code = code


class MalformedReply(ValueError):
    """A reply that is well framed but too short or for another command."""


def _pw(password: int) -> bytes:
    return password.to_bytes(4, "little")


def _u40(value: int) -> bytes:
    if not 0 <= value <= MAX_AMOUNT:
        raise ValueError("amount out of range for 5 bytes")
    return value.to_bytes(5, "little")


def _taxes(taxes: Sequence[int]) -> bytes:
    groups = list(taxes)[:4]
    if any(not 0 <= t <= 4 for t in groups):
        raise ValueError("tax group must be 0..4")
    return bytes(groups + [0] * (4 - len(groups)))


def printable(text: str) -> str:
    """`text` with every control character (C0, DEL, C1) and line or paragraph separator
    turned into a space: an item name from the POS must never start a line of its own on
    the paper (a forged total, say) or send the printer an escape sequence."""
    return "".join(" " if unicodedata.category(ch) in _NOT_PRINTABLE else ch for ch in text)


_NOT_PRINTABLE = frozenset({"Cc", "Zl", "Zp"})


def encode_text(text: str, width: int) -> bytes:
    """cp1251, control characters made spaces, cut to `width`, padded with NUL to `width`."""
    if width not in LINE_WIDTHS:
        raise ValueError(f"line width must be one of {LINE_WIDTHS}")
    raw = printable(text).encode("cp1251", errors="replace")[:width]
    return raw.ljust(width, b"\x00")


def tax_groups(tax: int) -> tuple[int, int, int, int]:
    """A line's single tax group (0 = none) as the four tax bytes."""
    return (tax, 0, 0, 0)


# -- host -> device -------------------------------------------------------------------------


def encode_device_type() -> bytes:
    return encode_frame(DEVICE_TYPE)


def encode_short_status(password: int) -> bytes:
    return encode_frame(SHORT_STATUS, _pw(password))


def encode_open_shift(password: int) -> bytes:
    return encode_frame(OPEN_SHIFT, _pw(password))


def encode_open_receipt(password: int, receipt_type: int) -> bytes:
    if not 0 <= receipt_type <= 3:
        raise ValueError("receipt type must be 0..3")
    return encode_frame(OPEN_RECEIPT, _pw(password) + bytes([receipt_type]))


def encode_line(
    password: int,
    *,
    quantity: int,
    price: int,
    department: int,
    taxes: Sequence[int],
    text: str,
    width: int,
    is_return: bool = False,
) -> bytes:
    """Sale line (`80`), or return-of-sale line (`82`) when `is_return`."""
    if not 0 <= department <= 255:
        raise ValueError("department must be 0..255")
    data = (
        _pw(password)
        + _u40(quantity)
        + _u40(price)
        + bytes([department])
        + _taxes(taxes)
        + encode_text(text, width)
    )
    return encode_frame(RETURN_SALE if is_return else SALE, data)


def encode_discount(
    password: int, *, amount: int, taxes: Sequence[int], text: str, width: int
) -> bytes:
    data = _pw(password) + _u40(amount) + _taxes(taxes) + encode_text(text, width)
    return encode_frame(DISCOUNT, data)


def encode_print_text(password: int, text: str, width: int, tapes: int = TAPE_RECEIPT) -> bytes:
    return encode_frame(PRINT_TEXT, _pw(password) + bytes([tapes]) + encode_text(text, width))


def encode_close_receipt(
    password: int,
    *,
    payments: Sequence[int],
    discount_percent: int = 0,
    taxes: Sequence[int] = (0, 0, 0, 0),
    text: str = "",
    width: int,
) -> bytes:
    """`payments`: cash, type 2, type 3, type 4 (missing ones are 0)."""
    pays = list(payments)[:4]
    pays += [0] * (4 - len(pays))
    if not -9999 <= discount_percent <= 9999:
        raise ValueError("discount percent out of range")
    data = (
        _pw(password)
        + b"".join(_u40(p) for p in pays)
        + discount_percent.to_bytes(2, "little", signed=True)
        + _taxes(taxes)
        + encode_text(text, width)
    )
    return encode_frame(CLOSE_RECEIPT, data)


def encode_simple(command: int, password: int) -> bytes:
    """Commands whose DATA is the password alone: 88, B0, 40, 41, E0, 10, FF01."""
    return encode_frame(command, _pw(password))


def encode_find_document(password: int, number: int) -> bytes:
    return encode_frame(FS_FIND_DOCUMENT, _pw(password) + number.to_bytes(4, "little"))


# -- device -> host -------------------------------------------------------------------------


def reply_payload(frame: Frame, command: int) -> bytes:
    """The reply DATA after the error byte (and the operator byte, when there is one)."""
    if frame.command != command:
        raise MalformedReply(f"reply to {frame.command:#x}, expected {command:#x}")
    if not frame.data:
        raise MalformedReply("reply without an error byte")
    if frame.data[0] != 0:
        raise DeviceError(command, frame.data[0])
    if command in NO_OPERATOR_REPLY:
        return frame.data[1:]
    return frame.data[2:]


@dataclass(frozen=True)
class ShortStatus:
    flags: int
    mode: int
    submode: int
    operations: int
    fp_error: int
    eklz_error: int

    @property
    def mode_base(self) -> int:
        return self.mode & 0x0F

    @property
    def mode_detail(self) -> int:
        return self.mode >> 4

    @property
    def shift_open(self) -> bool:
        return self.mode_base in (2, 3) or self.mode_base == 8

    @property
    def shift_over_24h(self) -> bool:
        return self.mode_base == 3

    @property
    def document_open(self) -> bool:
        return self.mode_base == 8

    @property
    def paper(self) -> bool:
        return self.submode not in (1, 2)


def decode_short_status(frame: Frame) -> ShortStatus:
    p = reply_payload(frame, SHORT_STATUS)
    if len(p) < 9:
        raise MalformedReply("short status too short")
    return ShortStatus(
        flags=int.from_bytes(p[0:2], "little"),
        mode=p[2],
        submode=p[3],
        operations=p[4] | (p[9] << 8 if len(p) > 9 else 0),
        fp_error=p[7],
        eklz_error=p[8],
    )


@dataclass(frozen=True)
class DeviceType:
    type: int
    subtype: int
    protocol_version: int
    protocol_subversion: int
    model: int
    language: int
    name: str


def decode_device_type(frame: Frame) -> DeviceType:
    p = reply_payload(frame, DEVICE_TYPE)
    if len(p) < 6:
        raise MalformedReply("device type too short")
    return DeviceType(*p[:6], name=p[6:].rstrip(b"\x00").decode("cp1251", errors="replace"))


@dataclass(frozen=True)
class FsStatus:
    life_phase: int
    current_document: int
    document_data: int
    shift_open: bool
    warnings: int
    datetime: tuple[int, int, int, int, int]
    storage_number: str
    last_document: int


def decode_fs_status(frame: Frame) -> FsStatus:
    p = reply_payload(frame, FS_STATUS)
    if len(p) < 30:
        raise MalformedReply("fiscal storage status too short")
    return FsStatus(
        life_phase=p[0],
        current_document=p[1],
        document_data=p[2],
        shift_open=bool(p[3]),
        warnings=p[4],
        datetime=(p[5], p[6], p[7], p[8], p[9]),
        storage_number=p[10:26].rstrip(b"\x00").decode("ascii", errors="replace"),
        last_document=int.from_bytes(p[26:30], "little"),
    )


def decode_change(frame: Frame) -> int:
    """Change given, from the reply to `85`."""
    p = reply_payload(frame, CLOSE_RECEIPT)
    return int.from_bytes(p[:5], "little") if len(p) >= 5 else 0


# Document types `FF0A` gives, from the fiscal data format (docs/spec/shtrih-m.md).
FN_DOC_SHIFT_OPEN = 2
FN_DOC_RECEIPT = 3
FN_DOC_SHIFT_CLOSE = 5
# A receipt's operation ("признак расчёта"): 1 sale (income), 2 return of sale.
OPERATION_BY_KIND = {"sale": 1, "return": 2}


@dataclass(frozen=True)
class FoundDocument:
    document_type: int
    acknowledged: bool
    data: bytes


def receipt_operation(doc: FoundDocument) -> int | None:
    """A receipt's operation byte: after date-time (5), number (4) and fiscal sign (4)."""
    if doc.document_type != FN_DOC_RECEIPT or len(doc.data) < 14:
        return None
    return doc.data[13]


def decode_find_document(frame: Frame) -> FoundDocument:
    p = reply_payload(frame, FS_FIND_DOCUMENT)
    if len(p) < 2:
        raise MalformedReply("document reply too short")
    return FoundDocument(document_type=p[0], acknowledged=bool(p[1]), data=bytes(p[2:]))
