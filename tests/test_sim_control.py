"""The printer over a real pty, driven byte by byte, with faults injected through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hardware_sim.control_api import create_app
from hardware_sim.shtrih_frames import build_frame
from hardware_sim.simulator import SimOptions, Simulator
from hardware_sim.testing import HostPort

ACK, NAK, ENQ = b"\x06", b"\x15", b"\x05"
CASHIER = (1).to_bytes(4, "little")
ADMIN = (30).to_bytes(4, "little")
STATUS = bytes.fromhex("02 05 10 01 00 00 00 14")
OPEN_SHIFT = bytes.fromhex("02 05 E0 01 00 00 00 E4")
OPEN_SALE = bytes.fromhex("02 06 8D 01 00 00 00 00 8A")


def le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


SALE_LINE = (
    b"\x80" + CASHIER + le(1000, 5) + le(4990, 5) + b"\x01" + bytes(4) + b"Tea".ljust(32, b"\0")
)
CLOSE_CASH = b"\x85" + CASHIER + le(5000, 5) + bytes(15) + bytes(2) + bytes(4) + bytes(32)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    simulator = Simulator(SimOptions(tmp_path))
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
async def api(sim: Simulator, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(create_app(sim))


@pytest.fixture
async def host(sim: Simulator) -> AsyncIterator[HostPort]:
    port = HostPort(sim.printer_port.link)
    try:
        yield port
    finally:
        port.close()


async def exchange(host: HostPort, frame: bytes) -> bytes:
    """Send one frame the way a host does; return the reply frame (ACKed)."""
    host.write(frame)
    assert await host.read(1) == ACK
    reply = await host.read_frame()
    host.write(ACK)
    return reply


async def command(host: HostPort, payload: bytes) -> bytes:
    """Reply payload (CMD + DATA) for a command payload."""
    return (await exchange(host, build_frame(payload)))[2:-1]


async def fault(api: TestClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await api.post("/faults", json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def state(api: TestClient) -> dict[str, Any]:
    response = await api.get("/printer/state")
    assert response.status == 200
    return await response.json()


async def test_link_over_a_real_pty(host: HostPort) -> None:
    host.write(ENQ)
    assert await host.read(1) == NAK
    host.write(b"\x00")
    assert await host.read(1) == NAK
    assert await exchange(host, OPEN_SALE) == bytes.fromhex("02 03 8D 16 01 99")
    host.write(STATUS[:-1] + b"\x00")
    assert await host.read(1) == NAK
    reply = await exchange(host, STATUS)
    assert reply[:4] == bytes.fromhex("02 10 10 00")
    host.write(ENQ)
    assert await host.read(1) == NAK  # the reply was taken


async def test_receipt_documents_and_paper_endpoints(host: HostPort, api: TestClient) -> None:
    assert await exchange(host, OPEN_SHIFT) == build_frame(b"\xe0\x00\x01")
    await exchange(host, OPEN_SALE)
    assert (await command(host, SALE_LINE))[1] == 0
    text = b"\x17" + CASHIER + b"\x02" + "Бонусов: 49".encode("cp1251").ljust(40, b"\0")
    assert (await command(host, text))[1] == 0
    reply = await command(host, CLOSE_CASH)
    assert reply[:3] == b"\x85\x00\x01" and int.from_bytes(reply[3:8], "little") == 10
    fs = await command(host, b"\xff\x01" + ADMIN)
    assert int.from_bytes(fs[-4:], "little") == 2  # 1 is the shift-open report

    docs = await (await api.get("/printer/documents")).json()
    assert [(d["number"], d["kind"]) for d in docs["documents"]] == [
        (1, "shift_open"), (2, "receipt")]
    doc = await (await api.get("/printer/documents/2")).json()
    assert doc["total"] == 4990 and doc["payments"] == [5000, 0, 0, 0] and doc["change"] == 10
    assert doc["lines"][0]["text"] == "Tea" and doc["text_lines"] == ["Бонусов: 49"]
    assert (await api.get("/printer/documents/3")).status == 404
    assert (await api.get("/printer/documents/x")).status == 400
    paper = await (await api.get("/printer/paper")).json()
    receipt = next(p for p in paper["paper"] if p["file"] == doc["paper_file"])
    assert "Бонусов: 49" in receipt["text"] and "ФД №" in receipt["text"]
    st = await state(api)
    assert st["mode"] == 2 and st["shift"]["open"] and st["last_fiscal_document"] == 2


async def test_drop_next_reply_then_enq_fetches_it(host: HostPort, api: TestClient) -> None:
    await fault(api, {"drop_next_reply": True})
    host.write(OPEN_SHIFT)
    assert await host.read(1) == ACK
    host.write(ENQ)
    # Had the reply been sent, STX would come before this ACK.
    assert await host.read(1) == ACK
    assert await host.read_frame() == build_frame(b"\xe0\x00\x01")
    host.write(ACK)
    assert (await state(api))["shift"]["number"] == 1  # run once


async def test_corrupt_next_reply_then_nak_enq(host: HostPort, api: TestClient) -> None:
    await fault(api, {"corrupt_next_reply": True})
    host.write(OPEN_SHIFT)
    assert await host.read(1) == ACK
    bad = await host.read_frame()
    good = build_frame(b"\xe0\x00\x01")
    assert bad[:-1] == good[:-1] and bad[-1] != good[-1]
    host.write(NAK)
    host.write(ENQ)
    assert await host.read(1) == ACK
    assert await host.read_frame() == good
    host.write(ACK)


async def test_paper_out_now_and_replace(host: HostPort, api: TestClient) -> None:
    st = (await fault(api, {"paper_out": "now"}))["printer"]
    assert st["submode"] == 1 and not st["paper"]["present"]
    assert await exchange(host, OPEN_SHIFT) == build_frame(b"\xe0\x6b\x01")
    st = (await fault(api, {"replace_paper": True}))["printer"]
    assert st["submode"] == 0
    assert await exchange(host, OPEN_SHIFT) == build_frame(b"\xe0\x00\x01")


async def test_paper_out_after_lines_then_b0(host: HostPort, api: TestClient) -> None:
    await exchange(host, OPEN_SHIFT)
    await exchange(host, OPEN_SALE)
    await fault(api, {"paper_out_after_lines": 1})
    assert (await command(host, SALE_LINE))[1] == 0
    assert (await state(api))["submode"] == 2
    assert (await command(host, SALE_LINE))[1] == 0x6B
    assert (await fault(api, {"replace_paper": True}))["printer"]["submode"] == 3
    assert (await command(host, CLOSE_CASH))[1] == 0x58
    assert (await command(host, b"\xb0" + ADMIN))[1] == 0
    assert (await command(host, CLOSE_CASH))[1] == 0
    paper = await (await api.get("/printer/paper")).json()
    assert "Tea" in paper["paper"][-1]["text"]


async def test_slow_printing(host: HostPort, api: TestClient) -> None:
    await fault(api, {"slow_printing_ms": 300})
    await exchange(host, OPEN_SHIFT)
    assert (await command(host, b"\x8d" + CASHIER + b"\x00"))[1] == 0x50
    deadline = asyncio.get_running_loop().time() + 5
    while (await command(host, b"\x10" + CASHIER))[6] == 5:  # submode: printing
        assert asyncio.get_running_loop().time() < deadline
    assert (await command(host, b"\x8d" + CASHIER + b"\x00"))[1] == 0


async def test_unplug_and_replug_at_the_same_path(
    sim: Simulator, host: HostPort, api: TestClient
) -> None:
    link = sim.printer_port.link
    await fault(api, {"drop_next_reply": True})
    host.write(OPEN_SHIFT)
    assert await host.read(1) == ACK
    st = (await fault(api, {"unplug": True}))["printer"]
    assert not st["plugged"] and st["faults"]["unplugged"]
    await host.wait_hangup()
    assert not link.exists() and not link.is_symlink()
    assert (await fault(api, {"replug": True}))["printer"]["plugged"]
    assert link.is_symlink()
    again = HostPort(link)
    try:
        # The printer stayed powered: the reply it held is still there to fetch.
        again.write(ENQ)
        assert await again.read(1) == ACK
        assert await again.read_frame() == build_frame(b"\xe0\x00\x01")
        again.write(ACK)
    finally:
        again.close()


async def test_shift_over_24h(host: HostPort, api: TestClient) -> None:
    body = await fault(api, {"shift_over_24h": True}, status=409)
    assert "shift" in body["error"]
    await exchange(host, OPEN_SHIFT)
    st = (await fault(api, {"shift_over_24h": True}))["printer"]
    assert st["mode"] == 3 and st["shift"]["over_24h"]
    assert await exchange(host, OPEN_SALE) == build_frame(b"\x8d\x4e\x01")
    assert (await command(host, b"\x41" + ADMIN))[1] == 0
    assert (await state(api))["mode"] == 4


async def test_fiscal_memory_full_and_clear(host: HostPort, api: TestClient) -> None:
    await exchange(host, OPEN_SHIFT)
    await fault(api, {"fiscal_memory_full": True})
    assert await exchange(host, OPEN_SALE) == build_frame(b"\x8d\x70\x01")
    st = (await fault(api, {"clear": True}))["printer"]
    assert st["faults"]["fiscal_memory_full"] is False
    assert await exchange(host, OPEN_SALE) == build_frame(b"\x8d\x00\x01")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"paper_out": "later"},
        {"paper_out_after_lines": -1},
        {"paper_out_after_lines": "3"},
        {"slow_printing_ms": True},
        {"unplug": False},
        {"drop_next_reply": 1},
        {"device": "scale", "unplug": True},
        {"unplug": True, "replug": True},
        {"explode": True},
    ],
)
async def test_bad_fault_requests_are_400(api: TestClient, body: dict[str, Any]) -> None:
    assert "error" in await fault(api, body, status=400)


async def test_non_json_body_is_400(api: TestClient) -> None:
    response = await api.post("/faults", data=b"not json")
    assert response.status == 400
    response = await api.post("/reader/present", json=["barcode"])
    assert response.status == 400
