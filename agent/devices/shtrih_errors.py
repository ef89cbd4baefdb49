"""Shtrih-M error codes and modes turned into messages a cashier can act on."""

from __future__ import annotations

SHIFT_NOT_OPEN = 0x16
WRONG_PARAMETERS = 0x33
NOT_SUPPORTED = 0x37
PAYMENTS_LESS_THAN_TOTAL = 0x45
RECEIPT_OPEN = 0x4A
SHIFT_OVER_24H = 0x4E
STILL_PRINTING = 0x50
WAITING_CONTINUE = 0x58
NEGATIVE_TOTAL = 0x5F
NO_PAPER = 0x6B
FISCAL_MEMORY_FULL = 0x70

MESSAGES: dict[int, str] = {
    SHIFT_NOT_OPEN: "shift not open: open a shift and repeat",
    WRONG_PARAMETERS: "the printer refused the receipt data: call support",
    NOT_SUPPORTED: "this printer does not support the command: check the printer model setting",
    PAYMENTS_LESS_THAN_TOTAL: "payments are less than the receipt total: take the full amount",
    RECEIPT_OPEN: "a receipt is still open on the printer: finish or cancel it",
    SHIFT_OVER_24H: "shift over 24 h: close the shift",
    STILL_PRINTING: "the printer is still printing: wait and repeat",
    WAITING_CONTINUE: "paper was replaced: press continue printing",
    NEGATIVE_TOTAL: "the receipt total is negative: check the discounts",
    NO_PAPER: "no paper: replace the roll and continue",
    FISCAL_MEMORY_FULL: "fiscal memory full: call the service centre to replace the fiscal storage",
}

NOT_CONNECTED = "printer not connected: check the cable and that the printer is on"
LINK_LOST = "lost contact with the printer: check the cable, then check the last receipt"


class PrinterError(Exception):
    """A failure the POS can show as is: `message` tells the cashier what to do.

    `code` is the device's error byte, or None for failures of the link itself.
    """

    def __init__(self, code: int | None, message: str | None = None) -> None:
        self.code = code
        self.message = message or message_for(code)
        super().__init__(self.message)

    def __repr__(self) -> str:
        code = "None" if self.code is None else f"0x{self.code:02X}"
        return f"PrinterError(code={code}, message={self.message!r})"


def message_for(code: int | None) -> str:
    if code is None:
        return LINK_LOST
    return MESSAGES.get(code, f"printer error 0x{code:02X}: call support")
