"""Shtrih-M command codes, error codes and modes (values from the spec and Shtrih-M docs)."""

from __future__ import annotations

from enum import IntEnum


class Cmd(IntEnum):
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


class Err(IntEnum):
    OK = 0x00
    # Not in the project spec; Shtrih-M's fiscal-storage code "no requested data".
    NO_DATA = 0x08
    SHIFT_NOT_OPEN = 0x16
    WRONG_PARAMS = 0x33
    UNSUPPORTED = 0x37
    # Not in the project spec; Shtrih-M's "shift open: operation not possible".
    SHIFT_OPEN = 0x3C
    PAYMENTS_LESS_THAN_TOTAL = 0x45
    # Not in the project spec; Shtrih-M's "operation not possible in a receipt of this type".
    WRONG_RECEIPT_TYPE = 0x49
    RECEIPT_OPEN = 0x4A
    # Not in the project spec; Shtrih-M's "non-cash payment exceeds the receipt total".
    NON_CASH_OVER_TOTAL = 0x4D
    SHIFT_OVER_24H = 0x4E
    # Not in the project spec; Shtrih-M's "wrong password".
    WRONG_PASSWORD = 0x4F
    PRINTING = 0x50
    WAITING_CONTINUE = 0x58
    # Not in the project spec; Shtrih-M's "incorrect operation" (e.g. no receipt to close).
    BAD_OPERATION = 0x5E
    NEGATIVE_TOTAL = 0x5F
    NO_PAPER = 0x6B
    FISCAL_MEMORY_FULL = 0x70


MODE_SHIFT_OPEN = 2
MODE_SHIFT_OVER_24H = 3
MODE_SHIFT_CLOSED = 4
MODE_DOCUMENT_OPEN = 8

CASHIER_PASSWORD = 1
ADMIN_PASSWORD = 30
