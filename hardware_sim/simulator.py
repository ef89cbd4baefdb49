"""One simulated till's devices: the Shtrih-M printer and a card reader, each on its own pty.

Owns the wiring (pty bytes -> link layer -> command layer -> pty) and the fault operations
that the control API exposes. Knows nothing of HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from hardware_sim.card_reader import CardReader, ReaderConfig
from hardware_sim.faults import ReplyFaults
from hardware_sim.fiscal_memory import FiscalStore
from hardware_sim.printer_paper import PaperRoll
from hardware_sim.pty_port import PtyPort
from hardware_sim.shtrih_device import ShtrihDevice
from hardware_sim.shtrih_link import ShtrihLink

PAPER_DIR = "paper"
MODE_NAMES = {2: "shift open", 3: "shift open over 24 h", 4: "shift closed", 8: "document open"}
SUBMODE_NAMES = {
    0: "paper present",
    1: "no paper, idle",
    2: "paper ran out while printing",
    3: "paper replaced, waiting for B0",
    5: "printing",
}
RECEIPT_TYPE_NAMES = {0: "sale", 1: "purchase", 2: "return of sale", 3: "return of purchase"}


@dataclass(frozen=True)
class SimOptions:
    directory: Path
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    line_width: int = 48
    control_port: int = 0


class Simulator:
    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.directory = options.directory
        self.store = FiscalStore(self.directory)
        self.memory = self.store.load()
        if self.store.migrating:
            self.save()  # move an old state's documents to the append-only log now
        self.paper = PaperRoll(self.directory / PAPER_DIR)
        self.device = ShtrihDevice(
            self.memory, self.paper, save=self.save, width=options.line_width
        )
        self.reply_faults = ReplyFaults()
        self.link = ShtrihLink(self.device.execute, self.reply_faults.tap)
        self.printer_port = PtyPort(self.directory / "printer", self._printer_bytes)
        # A reader does not take commands: whatever a client writes to it is read and ignored.
        self.reader_port = PtyPort(self.directory / "reader", lambda _data: None)
        self.reader = CardReader(options.reader, self.reader_port.write)

    def ports(self, device: str) -> PtyPort:
        return {"printer": self.printer_port, "reader": self.reader_port}[device]

    def start(self) -> None:
        self.printer_port.open()
        self.reader_port.open()

    def stop(self) -> None:
        self.printer_port.close()
        self.reader_port.close()

    def save(self) -> None:
        self.store.save(self.memory)

    def _printer_bytes(self, data: bytes) -> None:
        out = self.link.feed(data, time.monotonic())
        if out:
            self.printer_port.write(out)

    # ---------------------------------------------------------------- faults
    def paper_out_now(self) -> None:
        self.paper.run_out_now()

    def paper_out_after_lines(self, lines: int) -> None:
        self.paper.run_out_after(lines)

    def replace_paper(self) -> None:
        self.paper.replace()

    def set_slow_printing(self, ms: int) -> None:
        self.device.slow_printing_ms = ms

    def shift_over_24h(self) -> bool:
        """Move the open shift's start back past 24 h; False when no shift is open."""
        if self.device.shift_over_24h:
            return True
        return self.device.backdate_shift(timedelta(hours=24, minutes=1))

    def set_fiscal_memory_full(self, full: bool) -> None:
        self.device.set_fiscal_memory_full(full)

    def clear_faults(self) -> None:
        """Disarm what is armed; what already happened to the paper stays (replace it)."""
        self.reply_faults.clear()
        self.device.slow_printing_ms = 0
        self.device.refuse_next.clear()
        self.paper.lines_left = None
        self.device.set_fiscal_memory_full(False)
        for port in (self.printer_port, self.reader_port):
            port.open()

    # ----------------------------------------------------------------- views
    def printer_state(self) -> dict[str, Any]:
        memory, device = self.memory, self.device
        receipt = memory.open_receipt
        mode = device.mode
        return {
            "plugged": self.printer_port.plugged,
            "path": str(self.printer_port.link),
            "tty": self.printer_port.tty_name,
            "mode": mode,
            "mode_name": MODE_NAMES.get(mode & 0x0F, "unknown"),
            "submode": device.submode,
            "submode_name": SUBMODE_NAMES.get(device.submode, "unknown"),
            "shift": {
                "open": memory.shift_open,
                "number": memory.shift_number,
                "opened_at": memory.shift_opened_at,
                "over_24h": device.shift_over_24h,
            },
            "receipt": None
            if receipt is None
            else {
                "type": receipt.receipt_type,
                "type_name": RECEIPT_TYPE_NAMES.get(receipt.receipt_type, "unknown"),
                "operations": receipt.operations,
                "subtotal": receipt.subtotal,
                "paper_file": receipt.paper_file,
            },
            "last_fiscal_document": memory.last_document,
            "paper": {"present": self.paper.present, "submode": self.paper.submode},
            "holds_reply": self.link.holds_reply,
            "line_width": device.width,
            "faults": {
                "drop_next_reply": self.reply_faults.drop_next_reply,
                "corrupt_next_reply": self.reply_faults.corrupt_next_reply,
                "slow_printing_ms": device.slow_printing_ms,
                "refuse_next": {f"{c:02X}": f"{e:02X}" for c, e in device.refuse_next.items()},
                "paper_out_after_lines": self.paper.lines_left,
                "fiscal_memory_full": memory.fiscal_memory_full,
                "unplugged": not self.printer_port.plugged,
            },
        }

    def reader_state(self) -> dict[str, Any]:
        config = self.reader.config
        return {
            "plugged": self.reader_port.plugged,
            "path": str(self.reader_port.link),
            "tty": self.reader_port.tty_name,
            "kind": config.kind,
            "suffix": config.suffix,
            "stx_etx": config.stx_etx,
            "aim": config.aim,
        }
