"""The Shtrih-M command layer: modes, passwords, receipts, documents, paper, error codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hardware_sim.fiscal_memory import FiscalStore, load_memory
from hardware_sim.printer_paper import PaperRoll
from hardware_sim.shtrih_device import ShtrihDevice

CASHIER = (1).to_bytes(4, "little")
ADMIN = (30).to_bytes(4, "little")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 14, 10, 30)
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def device(tmp_path: Path, clock: Clock) -> ShtrihDevice:
    store = FiscalStore(tmp_path)
    memory = store.load()
    return ShtrihDevice(
        memory,
        PaperRoll(tmp_path / "paper"),
        save=lambda: store.save(memory),
        clock=clock,
        monotonic=lambda: clock.mono,
    )


def run(device: ShtrihDevice, code: int, data: bytes = b"", password: bytes = CASHIER) -> bytes:
    cmd = code.to_bytes(2 if code > 0xFF else 1, "big")
    reply = device.execute(cmd + password + data)
    assert reply.startswith(cmd)
    return reply[len(cmd) :]


def err(reply: bytes) -> int:
    return reply[0]


def le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def sale(qty: int, price: int, text: str = "Молоко", code: int = 0x80) -> bytes:
    return le(qty, 5) + le(price, 5) + b"\x01" + b"\x01\x00\x00\x00" + text.encode("cp1251")


def close(cash: int, card: int = 0, percent: int = 0) -> bytes:
    payments = le(cash, 5) + le(card, 5) + le(0, 5) + le(0, 5)
    return payments + percent.to_bytes(2, "little", signed=True) + bytes(4) + bytes(40)


def status(device: ShtrihDevice) -> tuple[int, int, int]:
    reply = run(device, 0x10)
    assert err(reply) == 0 and len(reply) == 15
    return reply[4], reply[5], reply[6]  # mode, submode, operations


def fs_last_document(device: ShtrihDevice) -> int:
    reply = run(device, 0xFF01, password=ADMIN)
    assert err(reply) == 0 and len(reply) == 31
    return int.from_bytes(reply[-4:], "little")


def test_full_sale_receipt(device: ShtrihDevice, tmp_path: Path) -> None:
    assert status(device)[0] == 4
    assert run(device, 0xE0) == b"\x00\x01"
    assert status(device)[0] == 2
    assert fs_last_document(device) == 1  # the shift-open report is fiscal document 1
    assert run(device, 0x8D, b"\x00") == b"\x00\x01"
    assert status(device) == (0x08, 0, 0)
    assert run(device, 0x80, sale(1500, 8990)) == b"\x00\x01"  # 1.5 x 89.90 = 134.85
    assert run(device, 0x80, sale(1000, 5000, "Хлеб")) == b"\x00\x01"
    assert run(device, 0x86, le(1000, 5) + bytes(4) + "Баллы".encode("cp1251")) == b"\x00\x01"
    assert (
        run(device, 0x17, b"\x02" + "Начислено 12 баллов".encode("cp1251").ljust(48, b"\0"))[0] == 0
    )
    assert status(device)[2] == 3
    reply = run(device, 0x85, close(20000))
    assert err(reply) == 0 and reply[1] == 1
    assert int.from_bytes(reply[2:7], "little") == 20000 - 17485  # change
    assert fs_last_document(device) == 2
    doc = device.memory.document(2)
    assert doc is not None and doc.total == 17485 and doc.kind == "receipt"
    paper = (tmp_path / "paper" / doc.paper_file).read_text(encoding="utf-8")
    for expected in ("Молоко", "1.500 x 89.90", "=134.85", "Баллы", "Начислено 12 баллов"):
        assert expected in paper
    assert "ИТОГ" in paper and "=174.85" in paper and "СДАЧА" in paper and "ФД №" in paper


def test_sale_line_opens_a_receipt_on_its_own(device: ShtrihDevice) -> None:
    run(device, 0xE0)
    assert err(run(device, 0x80, sale(1000, 100))) == 0
    assert status(device)[0] == 0x08
    assert err(run(device, 0x82, sale(1000, 100))) == 0x49  # return line in a sale receipt


def test_return_receipt_mode_high_nibble(device: ShtrihDevice) -> None:
    run(device, 0xE0)
    run(device, 0x8D, b"\x02")
    assert status(device)[0] == 0x28
    assert err(run(device, 0x82, sale(1000, 500))) == 0
    assert err(run(device, 0x85, close(500))) == 0
    assert device.memory.document(2).receipt_type == 2


def test_errors_from_the_spec(device: ShtrihDevice, clock: Clock) -> None:
    assert run(device, 0x8D, b"\x00") == b"\x16\x01"  # shift not open
    assert err(run(device, 0x80, sale(1000, 100))) == 0x16
    run(device, 0xE0)
    assert err(run(device, 0x8D, b"\x07")) == 0x33  # wrong parameters
    assert err(run(device, 0x80, b"\x01\x02")) == 0x33
    run(device, 0x8D, b"\x00")
    assert err(run(device, 0x8D, b"\x00")) == 0x4A  # receipt open
    assert err(run(device, 0x41, password=ADMIN)) == 0x4A
    run(device, 0x80, sale(1000, 1000))
    assert err(run(device, 0x85, close(999))) == 0x45  # payments less than total
    assert err(run(device, 0x85, close(0, card=1001))) == 0x4D  # non-cash over total
    assert err(run(device, 0x86, le(1001, 5) + bytes(4))) == 0x5F  # negative total
    assert device.execute(b"\x99" + CASHIER) == b"\x99\x37"  # unknown command
    assert device.execute(b"\xff\x77" + ADMIN) == b"\xff\x77\x37"
    run(device, 0x88)
    assert status(device)[0] == 2
    clock.now += timedelta(hours=24, minutes=1)
    assert status(device)[0] == 3
    assert run(device, 0x8D, b"\x00") == b"\x4e\x01"  # shift over 24 h
    assert err(run(device, 0x41, password=ADMIN)) == 0
    assert status(device)[0] == 4


def test_passwords(device: ShtrihDevice) -> None:
    assert run(device, 0x10, password=(5).to_bytes(4, "little"))[0] == 0x4F
    assert run(device, 0x41, password=CASHIER)[0] == 0x4F  # reports need the administrator
    assert run(device, 0xFF01, password=CASHIER) == b"\x4f"
    assert run(device, 0x10, password=ADMIN)[:2] == b"\x00\x1e"  # operator 30
    assert device.execute(b"\x10\x01\x00") == b"\x10\x33\x00"  # password cut short


def test_shift_reports_are_fiscal_documents_x_report_and_cancel_are_not(
    device: ShtrihDevice,
) -> None:
    run(device, 0xE0)
    assert fs_last_document(device) == 1  # the shift-open report
    run(device, 0x8D, b"\x00")
    run(device, 0x80, sale(1000, 100))
    assert run(device, 0x88) == b"\x00\x01"
    assert fs_last_document(device) == 1
    assert err(run(device, 0x88)) == 0x5E  # nothing to cancel
    assert err(run(device, 0x40, password=ADMIN)) == 0
    assert fs_last_document(device) == 1  # the X report takes no number
    assert err(run(device, 0x41, password=ADMIN)) == 0
    assert fs_last_document(device) == 2
    assert [d.kind for d in device.memory.documents] == ["shift_open", "z_report"]
    texts = [f.text for f in device.paper.files()]
    assert any("ЧЕК АННУЛИРОВАН" in t and "ФД №" not in t for t in texts)
    assert any("(X)" in t and "ФД №" not in t for t in texts)
    assert err(run(device, 0x41, password=ADMIN)) == 0x16
    assert err(run(device, 0x40, password=ADMIN)) == 0x16


def test_find_document(device: ShtrihDevice) -> None:
    run(device, 0xE0)
    run(device, 0x80, sale(2000, 1250))
    run(device, 0x85, close(2500))
    run(device, 0x41, password=ADMIN)
    # Document types of the fiscal data format: 2 shift open, 3 receipt, 5 shift close.
    types = [run(device, 0xFF0A, le(n, 4), password=ADMIN)[:3] for n in (1, 2, 3)]
    assert types == [b"\x00\x02\x01", b"\x00\x03\x01", b"\x00\x05\x01"]
    body = run(device, 0xFF0A, le(2, 4), password=ADMIN)[3:]
    assert body[:5] == bytes([25, 3, 14, 10, 30])
    assert int.from_bytes(body[5:9], "little") == 2
    assert body[13] == 1  # operation: sale income
    assert int.from_bytes(body[14:19], "little") == 2500
    opened = run(device, 0xFF0A, le(1, 4), password=ADMIN)[3:]
    assert int.from_bytes(opened[5:9], "little") == 1
    assert int.from_bytes(opened[13:15], "little") == 1  # shift number
    assert run(device, 0xFF0A, le(7, 4), password=ADMIN) == b"\x08"


def test_paper_runs_out_mid_receipt_then_b0(device: ShtrihDevice, tmp_path: Path) -> None:
    run(device, 0xE0)
    run(device, 0x8D, b"\x00")
    device.paper.run_out_after(2)
    # The line is registered; its printing stops when the roll ends.
    assert err(run(device, 0x80, sale(1000, 100))) == 0
    assert status(device)[1] == 2
    assert err(run(device, 0x80, sale(1000, 100))) == 0x6B
    assert err(run(device, 0xB0, password=ADMIN)) == 0x6B
    device.paper.replace()
    assert status(device)[1] == 3
    assert err(run(device, 0x80, sale(1000, 100))) == 0x58
    assert err(run(device, 0xB0, password=ADMIN)) == 0
    assert status(device)[1] == 0
    assert err(run(device, 0x85, close(100))) == 0
    paper = (tmp_path / "paper" / device.memory.document(2).paper_file).read_text()
    assert "0.100 x" not in paper and "1.000 x 1.00" in paper and "ФД №" in paper


def test_paper_out_now_refuses_printing_not_status(device: ShtrihDevice) -> None:
    device.paper.run_out_now()
    assert run(device, 0xE0) == b"\x6b\x01"
    assert status(device)[1] == 1
    device.paper.replace()
    assert run(device, 0xE0) == b"\x00\x01"


def test_slow_printing_answers_busy(device: ShtrihDevice, clock: Clock) -> None:
    device.slow_printing_ms = 500
    run(device, 0xE0)
    assert status(device)[1] == 5
    assert err(run(device, 0x8D, b"\x00")) == 0x50
    clock.mono += 0.6
    assert err(run(device, 0x8D, b"\x00")) == 0


def test_fiscal_memory_full(device: ShtrihDevice) -> None:
    run(device, 0xE0)
    run(device, 0x80, sale(1000, 100))
    device.set_fiscal_memory_full(True)
    assert err(run(device, 0x85, close(100))) == 0x70
    assert err(run(device, 0x88)) == 0  # the host can still clean up
    assert err(run(device, 0x8D, b"\x00")) == 0x70
    assert run(device, 0xFF01, password=ADMIN)[5] & 0x04


def test_fiscal_memory_round_trip(device: ShtrihDevice, tmp_path: Path) -> None:
    run(device, 0xE0)
    run(device, 0x80, sale(1000, 100))
    run(device, 0x85, close(100))
    run(device, 0x80, sale(3000, 100, "Открыт"))
    loaded = load_memory(tmp_path)
    assert loaded == device.memory
    assert loaded.open_receipt is not None and loaded.open_receipt.entries[0].text == "Открыт"


def test_device_type(device: ShtrihDevice) -> None:
    reply = device.execute(b"\xfc")
    assert reply[:2] == b"\xfc\x00"
    assert reply[8:].decode("cp1251") == "ШТРИХ-М-ПТК"


def receipts(device: ShtrihDevice, count: int) -> None:
    for _ in range(count):
        assert err(run(device, 0x80, sale(1000, 100))) == 0
        assert err(run(device, 0x85, close(100))) == 0


def test_documents_are_appended_once_and_the_state_stays_small(
    device: ShtrihDevice, tmp_path: Path
) -> None:
    run(device, 0xE0)
    receipts(device, 3)
    size = (tmp_path / "printer-state.json").stat().st_size
    receipts(device, 20)
    state = json.loads((tmp_path / "printer-state.json").read_text())
    assert "documents" not in state and state["last_document"] == 24  # 1: shift open
    # Only the counters' digits grow, not the history.
    assert (tmp_path / "printer-state.json").stat().st_size <= size + 4
    lines = (tmp_path / "fiscal-documents.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["number"] for line in lines] == list(range(1, 25))
    assert load_memory(tmp_path) == device.memory


def test_uncommitted_and_torn_document_lines_are_dropped(
    device: ShtrihDevice, tmp_path: Path, clock: Clock
) -> None:
    run(device, 0xE0)
    receipts(device, 2)
    log = tmp_path / "fiscal-documents.jsonl"
    good = log.read_bytes()
    fourth = json.loads(good.splitlines()[-1]) | {"number": 4, "total": 777}
    # Killed after appending document 4 but before the state committed it, then mid-line.
    log.write_bytes(good + json.dumps(fourth).encode() + b"\n" + b'{"number": 5, "ki')
    store = FiscalStore(tmp_path)
    memory = store.load()
    assert [d.number for d in memory.documents] == [1, 2, 3] and memory.last_document == 3
    restarted = ShtrihDevice(
        memory, PaperRoll(tmp_path / "paper"), save=lambda: store.save(memory), clock=clock
    )
    receipts(restarted, 1)
    numbers = [json.loads(line)["number"] for line in log.read_bytes().splitlines()]
    assert numbers == [1, 2, 3, 4]
    assert load_memory(tmp_path).document(4).total == 100


def test_a_version_1_state_is_migrated_to_the_document_log(tmp_path: Path) -> None:
    from hardware_sim.simulator import SimOptions, Simulator

    doc = {
        "number": 1,
        "kind": "receipt",
        "created_at": "2025-03-14T10:30:00",
        "shift_number": 1,
        "fiscal_sign": 42,
        "paper_file": "000002.txt",
        "receipt_type": 0,
        "entries": [
            {
                "kind": "sale",
                "text": "Чай",
                "quantity": 1000,
                "price": 500,
                "amount": 500,
                "department": 1,
                "taxes": [1, 0, 0, 0],
            }
        ],
        "total": 500,
        "payments": [500, 0, 0, 0],
    }
    old = {
        "version": 1,
        "shift_open": True,
        "shift_number": 1,
        "last_document": 1,
        "shift_opened_at": "2025-03-14T10:00:00",
        "paper_sequence": 2,
        "documents": [doc],
    }
    (tmp_path / "printer-state.json").write_text(json.dumps(old), encoding="utf-8")
    sim = Simulator(SimOptions(directory=tmp_path))
    state = json.loads((tmp_path / "printer-state.json").read_text())
    assert "documents" not in state and state["version"] == 2
    lines = (tmp_path / "fiscal-documents.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["number"] for line in lines] == [1]
    assert sim.memory.document(1).entries[0].text == "Чай"
    assert sim.memory.shift_totals(1).sales == 500
    assert load_memory(tmp_path) == sim.memory
