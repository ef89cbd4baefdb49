"""The real drivers against the real simulator, a subprocess, over real ptys."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.devices.printer import FiscalLine, FiscalReceipt, PrinterError, ShtrihPrinter
from agent.devices.reader import CardPresented, CardReader
from agent.devices.shtrih_link import LinkTimings
from protocol.card_keys import CardKeyring, new_key
from protocol.cards import card_token

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"test-programme-secret"

pytestmark = pytest.mark.skipif(
    not (ROOT / "hardware_sim" / "cli.py").exists(), reason="hardware_sim not written yet"
)


async def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `cond` until it is truthy; fail with `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Sim:
    def __init__(self, directory: Path, proc: subprocess.Popen[bytes], port: int) -> None:
        self.dir = directory
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.printer = str(directory / "printer")
        self.reader = str(directory / "reader")
        self.http = aiohttp.ClientSession()

    async def get(self, path: str) -> Any:
        async with self.http.get(self.base + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.http.post(self.base + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def documents(self) -> list[dict[str, Any]]:
        return (await self.get("/printer/documents"))["documents"]


async def start_sim(directory: Path, *args: str) -> Sim:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hardware_sim",
            "--dir",
            str(directory),
            "--control-port",
            "0",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(directory.parent / f"{directory.name}.log", "wb"),  # noqa: SIM115
    )
    control = directory / "control.json"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"simulator exited with {proc.returncode}")
            return control.exists()

        await until(ready, 20, "the simulator's control.json")
        port = json.loads(control.read_text())["port"]
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Sim(directory, proc, port)


async def stop_sim(sim: Sim) -> None:
    await sim.http.close()
    if sim.proc.poll() is None:
        sim.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(sim.proc.wait, 10)
        except subprocess.TimeoutExpired:
            sim.proc.kill()
            sim.proc.wait()


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def make_sim(tmp_path: Path) -> AsyncIterator[SimFactory]:
    sims: list[Sim] = []

    async def make(*args: str) -> Sim:
        sim = await start_sim(tmp_path / f"sim{len(sims)}", *args)
        sims.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in sims:
            await stop_sim(sim)


FAST = LinkTimings(answer=0.5, byte=0.25, reply=0.5, deadline=30.0)


@pytest.fixture
async def sim_printer(make_sim: SimFactory) -> AsyncIterator[tuple[Sim, ShtrihPrinter]]:
    sim = await make_sim()
    printer = ShtrihPrinter(sim.printer, timings=FAST, status_interval=None, connect_wait=0.5)
    await printer.start()
    try:
        assert await printer.wait_connected(10), printer.state()
        yield sim, printer
    finally:
        await printer.stop()


SALE = FiscalReceipt(
    kind="sale",
    lines=(
        FiscalLine("Milk 3.2%", qty=2000, price=8990, tax=1, points_discount=500),
        FiscalLine("Bread", qty=1000, price=4500, tax=2),
    ),
    cash=25000,
    text_lines=("Earned: 17 points", "Spent: 5 points", "Balance: 112 points"),
)


async def test_sale_with_points_discount(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    number = await printer.print_receipt(SALE)
    assert number == await printer.last_fiscal_document()
    docs = await sim.documents()
    assert [d["number"] for d in docs if d["number"] == number] == [number]
    doc = next(d for d in docs if d["number"] == number)
    assert len(doc["lines"]) == 2
    assert [d["amount"] if "amount" in d else d.get("sum") for d in doc["discounts"]] == [500]
    assert doc["text_lines"][:3] == list(SALE.text_lines)
    state = printer.state()
    assert state.connected and state.shift_open and not state.document_open
    assert state.last_fiscal_document == number


async def test_return_receipt(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    await printer.print_receipt(SALE)
    ret = FiscalReceipt(kind="return", lines=(FiscalLine("Bread", 1000, 4500, tax=2),), cash=4500)
    number = await printer.print_receipt(ret)
    doc = next(d for d in await sim.documents() if d["number"] == number)
    assert "return" in json.dumps(doc).lower()
    assert doc["lines"][0]["kind"] == "return"


async def test_points_as_payment(make_sim: SimFactory) -> None:
    sim = await make_sim()
    printer = ShtrihPrinter(sim.printer, timings=FAST, status_interval=None, points_mode="payment")
    await printer.start()
    try:
        assert await printer.wait_connected(10)
        number = await printer.print_receipt(SALE)
        doc = next(d for d in await sim.documents() if d["number"] == number)
        assert doc["discounts"] == []
        assert "500" in json.dumps(doc)
    finally:
        await printer.stop()


async def test_paper_out_then_replace_and_continue(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    await printer.print_receipt(SALE)  # opens the shift
    before = len(await sim.documents())
    await sim.post("/faults", {"paper_out_after_lines": 3})
    with pytest.raises(PrinterError) as err:
        await printer.print_receipt(SALE)
    assert err.value.code == 0x6B
    assert err.value.message == "no paper: replace the roll and continue"
    assert printer.state().last_error == "no paper: replace the roll and continue"
    assert not printer.state().paper
    await sim.post("/faults", {"replace_paper": True})
    await printer.continue_printing()
    number = await printer.print_receipt(SALE)  # resumes the open receipt
    docs = await sim.documents()
    assert len(docs) == before + 1 and docs[-1]["number"] == number
    assert len(docs[-1]["lines"]) == 2
    assert printer.state().last_error is None


async def test_paper_out_before_receipt_refuses_without_opening(
    sim_printer: tuple[Sim, ShtrihPrinter],
) -> None:
    sim, printer = sim_printer
    await sim.post("/faults", {"paper_out": "now"})
    with pytest.raises(PrinterError, match="no paper: replace the roll and continue"):
        await printer.print_receipt(SALE)
    assert not await printer.document_open()
    await sim.post("/faults", {"replace_paper": True})
    await printer.continue_printing()
    assert await printer.print_receipt(SALE) > 0


def fault_before(
    printer: ShtrihPrinter, sim: Sim, command: int, fault: dict[str, Any]
) -> list[int]:
    """Inject `fault` into the simulator just before the printer sends `command`."""
    original = printer._request
    fired: list[int] = []

    async def request(frame: bytes, *, idempotent: bool) -> Any:
        if frame[2] == command and not fired:
            fired.append(command)
            await sim.post("/faults", fault)
        return await original(frame, idempotent=idempotent)

    printer._request = request  # type: ignore[method-assign]
    return fired


@pytest.mark.parametrize("command", [0x80, 0x86, 0x85])
@pytest.mark.parametrize("fault", ["drop_next_reply", "corrupt_next_reply"])
async def test_lost_reply_recovered_without_double_printing(
    sim_printer: tuple[Sim, ShtrihPrinter], command: int, fault: str
) -> None:
    sim, printer = sim_printer
    await printer.print_receipt(SALE)
    before = await sim.documents()
    fired = fault_before(printer, sim, command, {fault: True})
    number = await printer.print_receipt(SALE)
    assert fired == [command]
    after = await sim.documents()
    assert len(after) == len(before) + 1 and after[-1]["number"] == number
    assert len(after[-1]["lines"]) == 2 and len(after[-1]["discounts"]) == 1
    assert (await sim.get("/printer/state"))["mode"] & 0x0F != 8


async def test_shift_over_24h_is_reported(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    await printer.print_receipt(SALE)
    await sim.post("/faults", {"shift_over_24h": True})
    with pytest.raises(PrinterError, match="shift over 24 h: close the shift"):
        await printer.print_receipt(SALE)
    assert printer.state().shift_over_24h
    z = await printer.close_shift()
    assert z == await printer.last_fiscal_document()
    assert await printer.print_receipt(SALE) == z + 2  # z + 1: the new shift-open report


async def test_printer_replug_reconnects(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    await printer.print_receipt(SALE)
    await sim.post("/faults", {"unplug": True})
    await until(lambda: not printer.state().connected, 5, "the printer to show disconnected")
    with pytest.raises(PrinterError, match="printer not connected"):
        await printer.print_receipt(SALE)
    back = time.monotonic()
    await sim.post("/faults", {"replug": True})
    await until(lambda: printer.state().connected, 2.0, "the printer to reconnect within 2 s")
    print(f"printer replug -> connected in {time.monotonic() - back:.3f}s")
    assert await printer.print_receipt(SALE) > 0


async def test_unplug_before_close_then_retry_gives_one_document(
    sim_printer: tuple[Sim, ShtrihPrinter],
) -> None:
    sim, printer = sim_printer
    await printer.print_receipt(SALE)
    before = len(await sim.documents())
    fault_before(printer, sim, 0x85, {"unplug": True})
    with pytest.raises(PrinterError, match=r"lost contact with the printer|not connected"):
        await printer.print_receipt(SALE)
    await sim.post("/faults", {"replug": True})
    assert await printer.wait_connected(5)
    assert await printer.document_open()  # the receipt is open on the device, never closed
    number = await printer.print_receipt(SALE)  # cancelled and printed again, once
    docs = await sim.documents()
    assert len(docs) == before + 1 and docs[-1]["number"] == number


async def test_unplug_after_close_registered_is_not_printed_twice(make_sim: SimFactory) -> None:
    sim = await make_sim()
    slow = LinkTimings(answer=0.5, byte=0.25, reply=3.0, deadline=30.0)
    printer = ShtrihPrinter(sim.printer, timings=slow, status_interval=None)
    await printer.start()
    try:
        assert await printer.wait_connected(10)
        await printer.print_receipt(SALE)
        before = len(await sim.documents())
        fault_before(printer, sim, 0x85, {"drop_next_reply": True})
        task = asyncio.create_task(printer.print_receipt(SALE))

        async def registered() -> bool:
            return len(await sim.documents()) == before + 1

        await until(registered, 5, "the receipt to be registered")
        await sim.post("/faults", {"unplug": True})  # before the host fetched the reply
        with pytest.raises(PrinterError):
            await task
        await sim.post("/faults", {"replug": True})
        assert await printer.wait_connected(5)
        number = await printer.print_receipt(SALE)  # the same sale, retried
        docs = await sim.documents()
        assert len(docs) == before + 1 and docs[-1]["number"] == number
    finally:
        await printer.stop()


async def test_slow_printing_is_waited_out(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    await sim.post("/faults", {"slow_printing_ms": 150})
    number = await printer.print_receipt(SALE)
    assert (await sim.documents())[-1]["number"] == number


async def test_fiscal_memory_full(sim_printer: tuple[Sim, ShtrihPrinter]) -> None:
    sim, printer = sim_printer
    await sim.post("/faults", {"fiscal_memory_full": True})
    with pytest.raises(PrinterError, match="fiscal memory full") as err:
        await printer.print_receipt(SALE)
    assert err.value.code == 0x70
    await sim.post("/faults", {"fiscal_memory_full": False})
    await printer.cancel_open_document()
    assert await printer.print_receipt(SALE) > 0


async def test_status_poll_keeps_state_fresh(make_sim: SimFactory) -> None:
    sim = await make_sim()
    printer = ShtrihPrinter(sim.printer, timings=FAST, status_interval=0.1)
    await printer.start()
    try:
        assert await printer.wait_connected(10)
        await sim.post("/faults", {"paper_out": "now"})
        await until(lambda: not printer.state().paper, 3, "the poll to see the paper out")
        assert printer.state().last_error == "no paper: replace the roll and continue"
    finally:
        await printer.stop()


async def test_receipt_during_reconnect_waits_for_the_printer(make_sim: SimFactory) -> None:
    sim = await make_sim()
    printer = ShtrihPrinter(sim.printer, timings=FAST, status_interval=None, connect_wait=5)
    await printer.start()
    try:
        assert await printer.wait_connected(10)
        await sim.post("/faults", {"unplug": True})
        await until(lambda: not printer.state().connected, 5, "the printer to disconnect")
        task = asyncio.create_task(printer.print_receipt(SALE))  # waits for the printer
        back = time.monotonic()
        await sim.post("/faults", {"replug": True})
        assert await task > 0
        assert time.monotonic() - back < 2.0
    finally:
        await printer.stop()


async def test_start_without_port_then_device_appears(tmp_path: Path) -> None:
    printer = ShtrihPrinter(
        str(tmp_path / "nothing"), timings=FAST, status_interval=None, connect_wait=0.5
    )
    await printer.start()
    try:
        assert not printer.state().connected
        with pytest.raises(PrinterError, match="printer not connected"):
            await asyncio.wait_for(printer.print_receipt(SALE), 10)
    finally:
        await printer.stop()


# -- card readers ---------------------------------------------------------------------------


async def _reader(sim: Sim, **kw: Any) -> tuple[CardReader, list[CardPresented]]:
    cards: list[CardPresented] = []
    keys = CardKeyring([new_key(1, datetime.now(UTC), secret=SECRET)])
    reader = CardReader(sim.reader, keys=keys, on_card=cards.append, **kw)
    await reader.start()
    assert await reader.wait_connected(10)
    return reader, cards


async def test_line_reader_barcode_and_bank_card(make_sim: SimFactory, caplog: Any) -> None:
    caplog.set_level("DEBUG")
    sim = await make_sim()
    reader, cards = await _reader(sim)
    try:
        await sim.post("/reader/present", {"barcode": "4006381333931"})
        await until(lambda: len(cards) == 1, 5, "the barcode read")
        assert cards[0].token == card_token(SECRET, "4006381333931")
        assert cards[0].kind == "loyalty" and cards[0].last4 == "3931"
        pan = "4111111111111111"
        await sim.post("/reader/present", {"track2": f";{pan}=25121010000000?"})
        await until(lambda: len(cards) == 2, 5, "the track 2 read")
        assert cards[1].kind == "bank" and cards[1].token == card_token(SECRET, pan)
        await sim.post("/reader/present", {"barcode": "4006381333932"})  # bad check digit
        await until(lambda: reader.state()["dropped"] == 1, 5, "the bad read to be dropped")
        assert reader.state()["reads"] == 2
        assert pan not in caplog.text and "4006381333931" not in caplog.text
        assert pan not in repr(cards) and pan not in repr(reader.state())
    finally:
        await reader.stop()


async def test_rfid_reader_repeat_suppression(make_sim: SimFactory) -> None:
    sim = await make_sim("--reader", "rfid")
    reader, cards = await _reader(sim, kind="rfid")
    try:
        result = await sim.post("/reader/present", {"tag": "0A00BC614E"})
        assert result["frames"] >= 1
        await until(lambda: len(cards) == 1, 5, "the tag read")
        # another tag after it: once it is read, every repeat of the first has been seen
        await sim.post("/reader/present", {"tag": "0A00BC614F"})
        await until(lambda: len(cards) == 2, 5, "the second tag")
        assert [c.kind for c in cards] == ["rfid", "rfid"]
        assert cards[0].token == card_token(SECRET, f"{0x00BC614E:010d}")
        assert cards[1].token == card_token(SECRET, f"{0x00BC614F:010d}")
        assert reader.state()["reads"] == 2 and reader.state()["dropped"] == 0
    finally:
        await reader.stop()


async def test_reader_replug_reconnects(make_sim: SimFactory) -> None:
    sim = await make_sim()
    reader, cards = await _reader(sim)
    try:
        await sim.post("/faults", {"device": "reader", "unplug": True})
        await until(lambda: not reader.state()["connected"], 5, "the reader to disconnect")
        back = time.monotonic()
        await sim.post("/faults", {"device": "reader", "replug": True})
        await until(lambda: reader.state()["connected"], 2.0, "the reader within 2 s")
        print(f"reader replug -> connected in {time.monotonic() - back:.3f}s")
        await sim.post("/reader/present", {"barcode": "4006381333931"})
        await until(lambda: len(cards) == 1, 5, "a read after the replug")
    finally:
        await reader.stop()


@pytest.mark.parametrize(
    ("args", "kw"),
    [
        (("--reader-suffix", "lf"), {"suffix": "lf"}),
        (("--reader-suffix", "crlf"), {"suffix": "crlf"}),
        (("--reader-suffix", "none"), {"suffix": "none"}),
        (("--reader-stx", "--reader-aim", "]E0"), {"stx_etx": True, "aim": True}),
    ],
)
async def test_line_reader_framings(
    make_sim: SimFactory, args: tuple[str, ...], kw: dict[str, Any]
) -> None:
    sim = await make_sim(*args)
    reader, cards = await _reader(sim, **kw)
    try:
        await sim.post("/reader/present", {"barcode": "4006381333931"})
        await until(lambda: len(cards) == 1, 5, "the first read")
        await sim.post("/reader/present", {"barcode": "5901234123457"})
        await until(lambda: len(cards) == 2, 5, "the second read")
        assert [c.last4 for c in cards] == ["3931", "3457"]
        assert reader.state()["dropped"] == 0
    finally:
        await reader.stop()
