"""The Shtrih-M printer's command layer: passwords, modes, submodes, error codes, documents.

``ShtrihDevice.execute`` takes one command payload (CMD + DATA, as the link layer hands it up)
and returns the reply payload. It never raises: whatever a host sends gets an error code.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hardware_sim import paper_layout
from hardware_sim.fiscal_memory import FiscalDocument, FiscalMemory, OpenReceipt, ReceiptEntry
from hardware_sim.printer_paper import (
    SUBMODE_NO_PAPER_IDLE,
    SUBMODE_NO_PAPER_PRINTING,
    SUBMODE_PAPER,
    SUBMODE_PRINTING,
    SUBMODE_WAITING_CONTINUE,
    PaperRoll,
)
from hardware_sim.shtrih_codes import (
    ADMIN_PASSWORD,
    CASHIER_PASSWORD,
    MODE_DOCUMENT_OPEN,
    MODE_SHIFT_CLOSED,
    MODE_SHIFT_OPEN,
    MODE_SHIFT_OVER_24H,
    Cmd,
    Err,
)
from hardware_sim.shtrih_frames import (
    InvalidFrame,
    decode_text,
    int_le,
    int_le_signed,
    split_command,
    to_le,
)

log = logging.getLogger(__name__)

SHIFT_LIMIT = timedelta(hours=24)
DEVICE_NAME = "ШТРИХ-М-ПТК"
# password -> (operator number, administrator?)
OPERATORS: dict[int, tuple[int, bool]] = {CASHIER_PASSWORD: (1, False), ADMIN_PASSWORD: (30, True)}
# Document types as `FF0A` gives them, from the fiscal data format (docs/spec/shtrih-m.md).
FN_DOC_SHIFT_OPEN = 2
FN_DOC_RECEIPT = 3
FN_DOC_SHIFT_CLOSE = 5
FN_DOC_STATE_REPORT = 21
FN_OPERATION_BY_RECEIPT_TYPE = {0: 1, 1: 3, 2: 2, 3: 4}


class CommandError(Exception):
    def __init__(self, code: Err) -> None:
        super().__init__(f"{code.name} ({code.value:02X})")
        self.code = code


Handler = Callable[["ShtrihDevice", bytes, int], bytes]


@dataclass(frozen=True)
class CommandSpec:
    handler: Handler
    password: bool = True
    admin: bool = False
    operator_in_reply: bool = True
    prints: bool = False


def _now_iso(when: datetime) -> str:
    return when.replace(microsecond=0).isoformat()


def _show(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%d.%m.%y %H:%M")


def _round_div(value: int, divisor: int) -> int:
    """value / divisor rounded half away from zero, as cash registers round money."""
    sign = -1 if value < 0 else 1
    return sign * ((abs(value) + divisor // 2) // divisor)


class ShtrihDevice:
    def __init__(
        self,
        memory: FiscalMemory,
        paper: PaperRoll,
        *,
        save: Callable[[], None] = lambda: None,
        width: int = 48,
        clock: Callable[[], datetime] = datetime.now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.memory = memory
        self.paper = paper
        self.width = width
        self._save = save
        self._clock = clock
        self._monotonic = monotonic
        self.slow_printing_ms = 0
        self._printing_until = 0.0
        self._loose_paper: str | None = None
        # Fault injection: command code -> error code, refused once (the command does not run).
        self.refuse_next: dict[int, Err] = {}

    # ----------------------------------------------------------------- state
    @property
    def shift_over_24h(self) -> bool:
        opened = self.memory.shift_opened_at
        if not self.memory.shift_open or opened is None:
            return False
        return self._clock() - datetime.fromisoformat(opened) > SHIFT_LIMIT

    @property
    def mode(self) -> int:
        receipt = self.memory.open_receipt
        if receipt is not None:
            return MODE_DOCUMENT_OPEN | (receipt.receipt_type << 4)
        if self.memory.shift_open:
            return MODE_SHIFT_OVER_24H if self.shift_over_24h else MODE_SHIFT_OPEN
        return MODE_SHIFT_CLOSED

    @property
    def printing(self) -> bool:
        return self._monotonic() < self._printing_until

    @property
    def submode(self) -> int:
        if self.paper.submode == SUBMODE_PAPER and self.printing:
            return SUBMODE_PRINTING
        return self.paper.submode

    def backdate_shift(self, by: timedelta) -> bool:
        if not self.memory.shift_open or self.memory.shift_opened_at is None:
            return False
        opened = datetime.fromisoformat(self.memory.shift_opened_at) - by
        self.memory.shift_opened_at = _now_iso(opened)
        self._save()
        return True

    def set_fiscal_memory_full(self, full: bool) -> None:
        self.memory.fiscal_memory_full = full
        self._save()

    # --------------------------------------------------------------- execute
    def execute(self, payload: bytes) -> bytes:
        try:
            command = split_command(payload)
        except InvalidFrame:
            return bytes([payload[0] if payload else 0, Err.UNSUPPORTED])
        prefix = command.code_bytes
        spec = COMMANDS.get(command.code)
        if spec is None:
            return prefix + bytes([Err.UNSUPPORTED])
        operator = 0
        data = command.data
        try:
            if spec.password:
                operator, data = self._check_password(data, spec.admin)
            if spec.prints:
                self._check_printer(command.code)
            refusal = self.refuse_next.pop(command.code, None)
            if refusal is not None:
                raise CommandError(refusal)
            reply = spec.handler(self, data, operator)
        except CommandError as error:
            return self._reply(prefix, error.code, spec, operator)
        except Exception:  # a bug here must not take the port down with it
            log.exception("command %s failed", prefix.hex())
            return self._reply(prefix, Err.WRONG_PARAMS, spec, operator)
        if command.code not in (Cmd.SHORT_STATUS, Cmd.DEVICE_TYPE, Cmd.FS_STATUS):
            try:
                self._save()
            except OSError:
                log.exception("could not save the fiscal memory")
        return self._reply(prefix, Err.OK, spec, operator) + reply

    @staticmethod
    def _reply(prefix: bytes, error: Err, spec: CommandSpec, operator: int) -> bytes:
        tail = bytes([operator]) if spec.operator_in_reply else b""
        return prefix + bytes([error]) + tail

    def _check_password(self, data: bytes, admin: bool) -> tuple[int, bytes]:
        if len(data) < 4:
            raise CommandError(Err.WRONG_PARAMS)
        known = OPERATORS.get(int_le(data[:4]))
        if known is None or (admin and not known[1]):
            raise CommandError(Err.WRONG_PASSWORD)
        return known[0], data[4:]

    def _check_printer(self, code: int) -> None:
        if self.printing:
            raise CommandError(Err.PRINTING)
        submode = self.paper.submode
        if code == Cmd.CONTINUE_PRINTING:
            if submode in (SUBMODE_NO_PAPER_IDLE, SUBMODE_NO_PAPER_PRINTING):
                raise CommandError(Err.NO_PAPER)
            return
        if submode in (SUBMODE_NO_PAPER_IDLE, SUBMODE_NO_PAPER_PRINTING):
            raise CommandError(Err.NO_PAPER)
        if submode == SUBMODE_WAITING_CONTINUE:
            raise CommandError(Err.WAITING_CONTINUE)

    def _print(self, file_name: str, lines: list[str]) -> None:
        self.paper.print_lines(file_name, lines)
        if self.slow_printing_ms > 0:
            self._printing_until = self._monotonic() + self.slow_printing_ms / 1000

    def _require_shift_for_sale(self) -> None:
        if not self.memory.shift_open:
            raise CommandError(Err.SHIFT_NOT_OPEN)
        if self.shift_over_24h:
            raise CommandError(Err.SHIFT_OVER_24H)

    def _require_memory(self) -> None:
        if self.memory.fiscal_memory_full:
            raise CommandError(Err.FISCAL_MEMORY_FULL)

    def _receipt(self) -> OpenReceipt:
        if self.memory.open_receipt is None:
            raise CommandError(Err.BAD_OPERATION)
        return self.memory.open_receipt

    def _fiscal_sign(self, number: int, total: int) -> int:
        key = f"{self.memory.storage_number}:{number}:{total}".encode()
        return zlib.crc32(key)

    # -------------------------------------------------------------- commands
    def _device_type(self, data: bytes, operator: int) -> bytes:
        # type 0 (cash register), subtype 0, protocol 1.13, model 0, language 0 (Russian)
        return bytes([0, 0, 1, 13, 0, 0]) + DEVICE_NAME.encode("cp1251")

    def _short_status(self, data: bytes, operator: int) -> bytes:
        receipt = self.memory.open_receipt
        operations = receipt.operations if receipt else 0
        flags = 0x0010  # bit 4: two decimal places in money
        if self.paper.present:
            flags |= 0x0002 | 0x0080  # receipt roll present, optical sensor sees paper
        return (
            to_le(flags, 2)
            + bytes([self.mode, self.submode, operations & 0xFF])
            + bytes([0x9C, 0x5E, 0, 0, (operations >> 8) & 0xFF])
            + bytes(3)
        )

    def _open_shift(self, data: bytes, operator: int) -> bytes:
        if self.memory.open_receipt is not None:
            raise CommandError(Err.RECEIPT_OPEN)
        if self.memory.shift_open:
            raise CommandError(Err.SHIFT_OPEN)
        self._require_memory()
        self.memory.shift_open = True
        self.memory.shift_number += 1
        # The shift-open report is a fiscal document: it takes the next number, as on a
        # real device with a fiscal storage (a host must not take it for a receipt).
        doc = self._new_document("shift_open", 0)
        self.memory.shift_opened_at = doc.created_at
        doc.paper_file = self.memory.next_paper_file()
        self.memory.add_document(doc)
        self._loose_paper = None
        self._print(doc.paper_file, paper_layout.shift_open_report(doc, _show(doc.created_at),
                                                                   self.width))
        return b""

    def _open_receipt(self, data: bytes, operator: int) -> bytes:
        if len(data) < 1 or data[0] > 3:
            raise CommandError(Err.WRONG_PARAMS)
        self._start_receipt(data[0])
        return b""

    def _start_receipt(self, receipt_type: int) -> OpenReceipt:
        if self.memory.open_receipt is not None:
            raise CommandError(Err.RECEIPT_OPEN)
        self._require_shift_for_sale()
        self._require_memory()
        now = _now_iso(self._clock())
        receipt = OpenReceipt(receipt_type, now, self.memory.next_paper_file())
        self.memory.open_receipt = receipt
        self._loose_paper = None
        header = paper_layout.receipt_header(
            receipt_type, self.memory.shift_number, _show(now), self.width
        )
        self._print(receipt.paper_file, header)
        return receipt

    def _sale(self, data: bytes, operator: int) -> bytes:
        return self._register_line(data, "sale", receipt_type=0)

    def _return_sale(self, data: bytes, operator: int) -> bytes:
        return self._register_line(data, "return", receipt_type=2)

    def _register_line(self, data: bytes, kind: str, receipt_type: int) -> bytes:
        if len(data) < 15:
            raise CommandError(Err.WRONG_PARAMS)
        qty, price, department = int_le(data[0:5]), int_le(data[5:10]), data[10]
        taxes = list(data[11:15])
        if qty == 0 or department > 16 or any(t > 4 for t in taxes):
            raise CommandError(Err.WRONG_PARAMS)
        self._require_shift_for_sale()
        receipt = self.memory.open_receipt
        if receipt is None:
            # A real Shtrih-M opens a receipt of the matching type on the first line.
            receipt = self._start_receipt(receipt_type)
        elif receipt.receipt_type != receipt_type:
            raise CommandError(Err.WRONG_RECEIPT_TYPE)
        entry = ReceiptEntry(
            kind,
            decode_text(data[15:]),
            quantity=qty,
            price=price,
            amount=_round_div(qty * price, 1000),
            department=department,
            taxes=taxes,
        )
        receipt.entries.append(entry)
        self._print(receipt.paper_file, paper_layout.entry_lines(entry, self.width))
        return b""

    def _discount(self, data: bytes, operator: int) -> bytes:
        if len(data) < 9 or any(t > 4 for t in data[5:9]):
            raise CommandError(Err.WRONG_PARAMS)
        receipt = self._receipt()
        if self.shift_over_24h:
            raise CommandError(Err.SHIFT_OVER_24H)
        amount = int_le(data[0:5])
        if amount > receipt.subtotal:
            raise CommandError(Err.NEGATIVE_TOTAL)
        entry = ReceiptEntry(
            "discount", decode_text(data[9:]), amount=amount, taxes=list(data[5:9])
        )
        receipt.entries.append(entry)
        self._print(receipt.paper_file, paper_layout.entry_lines(entry, self.width))
        return b""

    def _print_text(self, data: bytes, operator: int) -> bytes:
        if len(data) < 1:
            raise CommandError(Err.WRONG_PARAMS)
        if not data[0] & 0x02:
            return b""  # control tape only: nothing shows on the receipt roll
        entry = ReceiptEntry("text", decode_text(data[1:]))
        receipt = self.memory.open_receipt
        if receipt is not None:
            receipt.entries.append(entry)
            file_name = receipt.paper_file
        else:
            if self._loose_paper is None:
                self._loose_paper = self.memory.next_paper_file()
            file_name = self._loose_paper
        self._print(file_name, paper_layout.entry_lines(entry, self.width))
        return b""

    def _close_receipt(self, data: bytes, operator: int) -> bytes:
        if len(data) < 26 or any(t > 4 for t in data[22:26]):
            raise CommandError(Err.WRONG_PARAMS)
        receipt = self._receipt()
        if self.shift_over_24h:
            raise CommandError(Err.SHIFT_OVER_24H)
        self._require_memory()
        payments = [int_le(data[i : i + 5]) for i in range(0, 20, 5)]
        percent = int_le_signed(data[20:22])
        if abs(percent) > 9999:
            raise CommandError(Err.WRONG_PARAMS)
        subtotal = receipt.subtotal
        total = subtotal - _round_div(subtotal * percent, 10000)
        if total < 0:
            raise CommandError(Err.NEGATIVE_TOTAL)
        non_cash = sum(payments[1:])
        if non_cash > total:
            raise CommandError(Err.NON_CASH_OVER_TOTAL)
        if sum(payments) < total:
            raise CommandError(Err.PAYMENTS_LESS_THAN_TOTAL)
        doc = self._new_document("receipt", total)
        doc.receipt_type = receipt.receipt_type
        doc.entries = receipt.entries
        doc.subtotal = subtotal
        doc.discount_percent = percent
        doc.payments = payments
        doc.change = sum(payments) - total
        doc.text = decode_text(data[26:])
        doc.paper_file = receipt.paper_file
        self.memory.add_document(doc)
        self.memory.open_receipt = None
        self._print(doc.paper_file, paper_layout.receipt_footer(doc, self.width))
        return to_le(doc.change, 5)

    def _new_document(self, kind: str, total: int) -> FiscalDocument:
        now = _now_iso(self._clock())
        self.memory.last_document += 1
        self.memory.last_document_at = now
        number = self.memory.last_document
        return FiscalDocument(
            number=number,
            kind=kind,
            created_at=now,
            shift_number=self.memory.shift_number,
            fiscal_sign=self._fiscal_sign(number, total),
            paper_file="",
            total=total,
        )

    def _cancel_receipt(self, data: bytes, operator: int) -> bytes:
        receipt = self._receipt()
        self.memory.open_receipt = None
        self._print(receipt.paper_file, paper_layout.cancelled_footer(self.width))
        return b""

    def _continue_printing(self, data: bytes, operator: int) -> bytes:
        if self.paper.submode == SUBMODE_WAITING_CONTINUE:
            self.paper.continue_printing()
        return b""

    def _x_report(self, data: bytes, operator: int) -> bytes:
        # Not a fiscal document: printed only, it takes no number and changes no counter.
        self._require_shift_report()
        totals = self.memory.shift_totals(self.memory.shift_number)
        when = _show(_now_iso(self._clock()))
        self._loose_paper = None
        self._print(
            self.memory.next_paper_file(),
            paper_layout.x_report(self.memory.shift_number, when, totals.receipts,
                                  totals.sales, totals.returns, self.width),
        )
        return b""

    def _z_report(self, data: bytes, operator: int) -> bytes:
        self._require_shift_report()
        self._require_memory()
        # Running totals kept by the fiscal memory: a report does not scan the history.
        totals = self.memory.shift_totals(self.memory.shift_number)
        sales, returns = totals.sales, totals.returns
        doc = self._new_document("z_report", sales - returns)
        doc.paper_file = self.memory.next_paper_file()
        self.memory.add_document(doc)
        self._loose_paper = None
        lines = paper_layout.shift_report(
            doc, _show(doc.created_at), totals.receipts, sales, returns, self.width
        )
        self._print(doc.paper_file, lines)
        self.memory.shift_open = False
        self.memory.shift_opened_at = None
        return b""

    def _require_shift_report(self) -> None:
        if self.memory.open_receipt is not None:
            raise CommandError(Err.RECEIPT_OPEN)
        if not self.memory.shift_open:
            raise CommandError(Err.SHIFT_NOT_OPEN)

    def _fs_status(self, data: bytes, operator: int) -> bytes:
        receipt_open = self.memory.open_receipt is not None
        when = self.memory.last_document_at
        stamp = datetime.fromisoformat(when) if when else self._clock()
        warnings = 0x04 if self.memory.fiscal_memory_full else 0
        return (
            bytes([0x03, 0x04 if receipt_open else 0, 0x01 if receipt_open else 0])
            + bytes([1 if self.memory.shift_open else 0, warnings])
            + bytes([stamp.year % 100, stamp.month, stamp.day, stamp.hour, stamp.minute])
            + self.memory.storage_number.encode("ascii")[:16].ljust(16, b"0")
            + to_le(self.memory.last_document, 4)
        )

    def _fs_find_document(self, data: bytes, operator: int) -> bytes:
        if len(data) < 4:
            raise CommandError(Err.WRONG_PARAMS)
        doc = self.memory.document(int_le(data[:4]))
        if doc is None:
            raise CommandError(Err.NO_DATA)
        created = datetime.fromisoformat(doc.created_at)
        head = bytes([created.year % 100, created.month, created.day, created.hour])
        head += bytes([created.minute]) + to_le(doc.number, 4) + to_le(doc.fiscal_sign, 4)
        if doc.kind == "receipt":
            operation = FN_OPERATION_BY_RECEIPT_TYPE.get(doc.receipt_type or 0, 1)
            body = head + bytes([operation]) + to_le(doc.total, 5)
            return bytes([FN_DOC_RECEIPT, 1]) + body
        if doc.kind == "shift_open":
            return bytes([FN_DOC_SHIFT_OPEN, 1]) + head + to_le(doc.shift_number, 2)
        if doc.kind == "z_report":
            return bytes([FN_DOC_SHIFT_CLOSE, 1]) + head + to_le(doc.shift_number, 2)
        # Only an X report saved by an older simulator lands here: it was wrongly numbered.
        return bytes([FN_DOC_STATE_REPORT, 1]) + head + to_le(0, 4) + bytes(3)


COMMANDS: dict[int, CommandSpec] = {
    Cmd.DEVICE_TYPE: CommandSpec(
        ShtrihDevice._device_type, password=False, operator_in_reply=False
    ),
    Cmd.SHORT_STATUS: CommandSpec(ShtrihDevice._short_status),
    Cmd.OPEN_SHIFT: CommandSpec(ShtrihDevice._open_shift, prints=True),
    Cmd.OPEN_RECEIPT: CommandSpec(ShtrihDevice._open_receipt, prints=True),
    Cmd.SALE: CommandSpec(ShtrihDevice._sale, prints=True),
    Cmd.RETURN_SALE: CommandSpec(ShtrihDevice._return_sale, prints=True),
    Cmd.DISCOUNT: CommandSpec(ShtrihDevice._discount, prints=True),
    Cmd.PRINT_TEXT: CommandSpec(ShtrihDevice._print_text, prints=True),
    Cmd.CLOSE_RECEIPT: CommandSpec(ShtrihDevice._close_receipt, prints=True),
    Cmd.CANCEL_RECEIPT: CommandSpec(ShtrihDevice._cancel_receipt, prints=True),
    Cmd.CONTINUE_PRINTING: CommandSpec(ShtrihDevice._continue_printing, admin=True, prints=True),
    Cmd.X_REPORT: CommandSpec(ShtrihDevice._x_report, admin=True, prints=True),
    Cmd.Z_REPORT: CommandSpec(ShtrihDevice._z_report, admin=True, prints=True),
    Cmd.FS_STATUS: CommandSpec(ShtrihDevice._fs_status, admin=True, operator_in_reply=False),
    Cmd.FS_FIND_DOCUMENT: CommandSpec(
        ShtrihDevice._fs_find_document, admin=True, operator_in_reply=False
    ),
}
