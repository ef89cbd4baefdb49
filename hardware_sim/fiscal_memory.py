"""The printer's fiscal memory: shift, document counters, registered documents, open receipt.

This is what a real fiscal printer keeps through a power cycle, so it is saved to
``printer-state.json`` (atomically) after every change and loaded at start-up.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


@dataclass
class ReceiptEntry:
    """One thing printed inside a receipt, in order: a sale/return line, a discount or text."""

    kind: str  # "sale" | "return" | "discount" | "text"
    text: str = ""
    quantity: int = 0  # thousandths
    price: int = 0  # kopecks
    amount: int = 0  # kopecks: the line sum, or the discount sum
    department: int = 0
    taxes: list[int] = field(default_factory=list)


@dataclass
class OpenReceipt:
    receipt_type: int  # 0 sale, 1 purchase, 2 return of sale, 3 return of purchase
    opened_at: str
    paper_file: str
    entries: list[ReceiptEntry] = field(default_factory=list)

    @property
    def operations(self) -> int:
        return sum(1 for e in self.entries if e.kind in ("sale", "return", "discount"))

    @property
    def subtotal(self) -> int:
        total = 0
        for entry in self.entries:
            if entry.kind in ("sale", "return"):
                total += entry.amount
            elif entry.kind == "discount":
                total -= entry.amount
        return total


@dataclass
class FiscalDocument:
    number: int
    kind: str  # "receipt" | "x_report" | "z_report"
    created_at: str
    shift_number: int
    fiscal_sign: int
    paper_file: str
    receipt_type: int | None = None
    entries: list[ReceiptEntry] = field(default_factory=list)
    subtotal: int = 0
    discount_percent: int = 0  # hundredths of a percent, signed
    total: int = 0
    payments: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    change: int = 0
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lines"] = [asdict(e) for e in self.entries if e.kind in ("sale", "return")]
        data["discounts"] = [asdict(e) for e in self.entries if e.kind == "discount"]
        data["text_lines"] = [e.text for e in self.entries if e.kind == "text"]
        return data


@dataclass
class FiscalMemory:
    storage_number: str = "9999078900001234"
    shift_open: bool = False
    shift_number: int = 0
    shift_opened_at: str | None = None
    last_document: int = 0
    last_document_at: str | None = None
    paper_sequence: int = 0
    fiscal_memory_full: bool = False
    documents: list[FiscalDocument] = field(default_factory=list)
    open_receipt: OpenReceipt | None = None

    def next_paper_file(self) -> str:
        self.paper_sequence += 1
        return f"{self.paper_sequence:06d}.txt"

    def document(self, number: int) -> FiscalDocument | None:
        for doc in self.documents:
            if doc.number == number:
                return doc
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FiscalMemory:
        def entries(raw: list[dict[str, Any]]) -> list[ReceiptEntry]:
            return [ReceiptEntry(**e) for e in raw]

        docs = [
            FiscalDocument(**{**d, "entries": entries(d.get("entries", []))})
            for d in data.get("documents", [])
        ]
        receipt = data.get("open_receipt")
        open_receipt = (
            OpenReceipt(**{**receipt, "entries": entries(receipt.get("entries", []))})
            if receipt
            else None
        )
        plain = {
            k: v
            for k, v in data.items()
            if k not in ("documents", "open_receipt", "version") and k in cls.__dataclass_fields__
        }
        return cls(**plain, documents=docs, open_receipt=open_receipt)


def load_memory(path: Path) -> FiscalMemory:
    if not path.exists():
        return FiscalMemory()
    return FiscalMemory.from_json(json.loads(path.read_text(encoding="utf-8")))


def save_memory(memory: FiscalMemory, path: Path) -> None:
    write_json_atomic(path, memory.to_json())


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
