"""The printer's fiscal memory: shift, document counters, registered documents, open receipt.

This is what a real fiscal printer keeps through a power cycle, so ``FiscalStore`` saves it
after every change and loads it at start-up. Like a real fiscal memory it is append-only:
each registered document is appended once to ``fiscal-documents.jsonl``, and only the small
mutable part (shift, counters, open receipt) is rewritten, so saving costs the same whatever
the history.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_VERSION = 2  # 1: documents inside the state file
STATE_FILE = "printer-state.json"
DOCUMENTS_FILE = "fiscal-documents.jsonl"


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
    kind: str  # "shift_open" | "receipt" | "z_report" (the X report is not a document)
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
        data["tax_totals"] = self.tax_totals()
        return data

    def tax_totals(self) -> dict[str, int]:
        """Kopecks of the receipt under each tax group (its lines less their discounts), as
        the device's per-group registers count them; "0" gathers what carries no group."""
        totals: dict[str, int] = {}
        for e in self.entries:
            if e.kind not in ("sale", "return", "discount"):
                continue
            sign = -1 if e.kind == "discount" else 1
            groups = sorted({t for t in e.taxes if t}) or [0]
            for g in groups:  # a line in two groups counts in each, as the device's do
                totals[str(g)] = totals.get(str(g), 0) + sign * e.amount
        return dict(sorted(totals.items()))


@dataclass
class ShiftTotals:
    """Running totals of one shift's receipts, so a shift report never scans history."""

    receipts: int = 0
    sales: int = 0  # kopecks, receipts of type 0
    returns: int = 0  # kopecks, receipts of type 2


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
    # Append only, in number order: add documents with add_document (it keeps the indexes).
    documents: list[FiscalDocument] = field(default_factory=list)
    open_receipt: OpenReceipt | None = None

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the derived indexes (not dataclass fields: not saved, not compared)."""
        self._by_number: dict[int, FiscalDocument] = {}
        self._shift_totals: dict[int, ShiftTotals] = {}
        for doc in self.documents:
            self._index(doc)

    def _index(self, doc: FiscalDocument) -> None:
        self._by_number[doc.number] = doc
        if doc.kind == "receipt":
            totals = self._shift_totals.setdefault(doc.shift_number, ShiftTotals())
            totals.receipts += 1
            if doc.receipt_type == 0:
                totals.sales += doc.total
            elif doc.receipt_type == 2:
                totals.returns += doc.total

    def add_document(self, doc: FiscalDocument) -> None:
        self.documents.append(doc)
        self._index(doc)

    def next_paper_file(self) -> str:
        self.paper_sequence += 1
        return f"{self.paper_sequence:06d}.txt"

    def document(self, number: int) -> FiscalDocument | None:
        return self._by_number.get(number)

    def shift_totals(self, shift_number: int) -> ShiftTotals:
        totals = self._shift_totals.get(shift_number, ShiftTotals())
        return ShiftTotals(totals.receipts, totals.sales, totals.returns)

    def state_json(self) -> dict[str, Any]:
        """Everything but the documents: small, whatever the history (never asdict(self))."""
        data: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("documents", "open_receipt")
        }
        data["open_receipt"] = asdict(self.open_receipt) if self.open_receipt else None
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FiscalMemory:
        """From a state dict; documents come from a version 1 state's "documents" list."""
        docs = [document_from_json(d) for d in data.get("documents", [])]
        receipt = data.get("open_receipt")
        open_receipt = (
            OpenReceipt(**{**receipt, "entries": _entries(receipt.get("entries", []))})
            if receipt
            else None
        )
        plain = {
            k: v
            for k, v in data.items()
            if k not in ("documents", "open_receipt", "version") and k in cls.__dataclass_fields__
        }
        return cls(**plain, documents=docs, open_receipt=open_receipt)


def _entries(raw: list[dict[str, Any]]) -> list[ReceiptEntry]:
    return [ReceiptEntry(**e) for e in raw]


def document_from_json(data: dict[str, Any]) -> FiscalDocument:
    return FiscalDocument(**{**data, "entries": _entries(data.get("entries", []))})


def _document_line(doc: FiscalDocument) -> bytes:
    # json.dumps escapes newlines inside strings, so b"\n" only ever ends a line. (Never split
    # with str.splitlines: with ensure_ascii=False it would also split at U+2028.)
    return (json.dumps(asdict(doc), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class FiscalStore:
    """Persists one FiscalMemory in a directory at a cost that does not grow with history.

    * ``fiscal-documents.jsonl``: each registered document appended once, one JSON line.
    * ``printer-state.json``: shift, counters, flags, open receipt; small, written atomically.

    The state file is the commit point: it is written after the documents are appended, and a
    document line whose number is above the state's ``last_document`` (the process died between
    the two writes) or a torn last line is not loaded, and is cut off before the next append.
    That is exactly the old guarantee: a command whose save did not finish never happened (its
    reply had not been sent either). A version 1 state with a "documents" list is migrated:
    its documents are written to the jsonl, then the state without them.
    """

    def __init__(self, directory: Path) -> None:
        self.state_path = directory / STATE_FILE
        self.documents_path = directory / DOCUMENTS_FILE
        self._written = 0  # memory.documents[:_written] are in the jsonl
        self._size = 0  # bytes of the jsonl that hold them; the rest is cut before appending
        self._truncate = False
        self._last_state: str | None = None
        self.migrating = False  # loaded a version 1 state: save soon to move its documents

    def load(self) -> FiscalMemory:
        state: dict[str, Any] | None = None
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        committed = None if state is None else int(state.get("last_document", 0))
        logged, size = self._read_documents(committed)
        memory = FiscalMemory.from_json(state or {})
        if state is not None and "documents" in state:
            # Version 1: the state's documents win; jsonl ones it lacks (a half-finished
            # migration) are kept. Rewrite the whole jsonl once, on the next save.
            known = {d.number for d in memory.documents}
            merged = memory.documents + [d for d in logged if d.number not in known]
            memory.documents = sorted(merged, key=lambda d: d.number)
            self._written, self._size = 0, 0
            self.migrating = True
        else:
            memory.documents = logged
            self._written = len(logged)
            self._size = size
            if state is None and logged:
                # No state file but documents: trust the append-only log for the numbering.
                memory.last_document = logged[-1].number
                memory.last_document_at = logged[-1].created_at
        memory.reindex()
        self._truncate = True
        self._last_state = None
        return memory

    def _read_documents(self, committed: int | None) -> tuple[list[FiscalDocument], int]:
        """Committed documents in the jsonl, and the byte length of the lines holding them."""
        try:
            raw = self.documents_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        docs: list[FiscalDocument] = []
        offset = size = 0
        while True:
            end = raw.find(b"\n", offset)
            if end < 0:
                break  # nothing more, or a torn last line: never committed
            line, offset = raw[offset:end], end + 1
            try:
                doc = document_from_json(json.loads(line))
            except (ValueError, TypeError):
                log.warning("%s: skipping a damaged line", self.documents_path)
                continue
            if committed is not None and doc.number > committed:
                break  # appended, but the state that commits it was never written
            if docs and doc.number <= docs[-1].number:
                log.warning(
                    "%s: skipping out-of-order document %d", self.documents_path, doc.number
                )
                continue
            docs.append(doc)
            size = offset
        return docs, size

    def save(self, memory: FiscalMemory) -> None:
        """Append the documents not yet written, then commit the small state atomically."""
        if self._written < len(memory.documents):
            self._append(memory.documents[self._written :])
            self._written = len(memory.documents)
        text = json.dumps(memory.state_json(), ensure_ascii=False, indent=1)
        if text != self._last_state:  # e.g. a document look-up changes nothing
            write_text_atomic(self.state_path, text)
            self._last_state = text
        self.migrating = False

    def _append(self, docs: list[FiscalDocument]) -> None:
        data = b"".join(_document_line(d) for d in docs)
        fd = os.open(self.documents_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if self._truncate:
                os.ftruncate(fd, self._size)  # drop uncommitted or torn lines, once
                self._truncate = False
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                # Disk full and the like: leave no half line behind; the next save retries.
                os.ftruncate(fd, self._size)
                raise
            self._size += len(data)
        finally:
            os.close(fd)


def load_memory(directory: Path) -> FiscalMemory:
    """The fiscal memory saved in ``directory`` (read only: nothing is written)."""
    return FiscalStore(directory).load()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so a reader (or a crash) never sees half a file."""
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
