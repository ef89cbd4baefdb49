"""Card readers: framing (pure) and reads arriving over a real pty via the control API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hardware_sim.card_reader import ReaderConfig, ReadError, line_read, rfid_frame, track2
from hardware_sim.control_api import create_app
from hardware_sim.simulator import SimOptions, Simulator
from hardware_sim.testing import HostPort


def test_rfid_frame_is_14_bytes_with_xor_checksum() -> None:
    frame = rfid_frame("0a1b2c3d4e")
    checksum = 0x0A ^ 0x1B ^ 0x2C ^ 0x3D ^ 0x4E
    assert frame == b"\x02" + b"0A1B2C3D4E" + f"{checksum:02X}".encode() + b"\x03"
    assert len(frame) == 14
    with pytest.raises(ReadError):
        rfid_frame("0A1B2C3D4")


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ReaderConfig(), b"4600000000008\r"),
        (ReaderConfig(suffix="lf"), b"4600000000008\n"),
        (ReaderConfig(suffix="crlf"), b"4600000000008\r\n"),
        (ReaderConfig(suffix="none"), b"4600000000008"),
        (ReaderConfig(stx_etx=True, aim="]E0"), b"\x02]E04600000000008\x03\r"),
    ],
)
def test_line_framing(config: ReaderConfig, expected: bytes) -> None:
    assert line_read("4600000000008", config) == expected


def test_track2_sentinels() -> None:
    assert track2("4276380012345671=2512101") == ";4276380012345671=2512101?"
    assert track2(";4276380012345671=2512101?") == ";4276380012345671=2512101?"
    with pytest.raises(ReadError):
        track2("42763800X")


SimFactory = Callable[[ReaderConfig], Any]


@pytest.fixture
async def reader_sim(
    tmp_path: Path, aiohttp_client: Any
) -> AsyncIterator[Callable[[ReaderConfig], Any]]:
    started: list[tuple[Simulator, HostPort]] = []

    async def start(config: ReaderConfig) -> tuple[TestClient, HostPort]:
        sim = Simulator(SimOptions(tmp_path / str(len(started)), reader=config))
        sim.start()
        port = HostPort(sim.reader_port.link)
        started.append((sim, port))
        return await aiohttp_client(create_app(sim)), port

    try:
        yield start
    finally:
        for sim, port in started:
            port.close()
            sim.stop()


async def present(api: TestClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await api.post("/reader/present", json=body)
    assert response.status == status, await response.text()
    return await response.json()


async def test_barcode_and_track2_over_pty(reader_sim: Any) -> None:
    api, port = await reader_sim(ReaderConfig(suffix="crlf"))
    sent = await present(api, {"barcode": "4600000000008"})
    assert await port.read(15) == b"4600000000008\r\n" == bytes.fromhex(sent["sent_hex"])
    await present(api, {"track2": "4276380012345671=2512101"})
    assert await port.read(28) == b";4276380012345671=2512101?\r\n"
    await present(api, {"raw_hex": "00ff0d"})
    assert await port.read(3) == b"\x00\xff\x0d"
    assert port.pending() == b""


async def test_rfid_repeats_while_in_field(reader_sim: Any) -> None:
    api, port = await reader_sim(ReaderConfig(kind="rfid"))
    sent = await present(api, {"tag": "0A1B2C3D4E"})
    assert sent["frames"] == 3
    assert await port.read(42) == rfid_frame("0A1B2C3D4E") * 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"barcode": ""},
        {"barcode": 4600000000008},
        {"barcode": "46", "track2": "1=2"},
        {"tag": "0A1B2C3D4E"},  # a line reader cannot read a tag
        {"track2": "abc"},
        {"raw_hex": "zz"},
        {"barcode": "line\r\nbreak"},
        {"colour": "red"},
    ],
)
async def test_bad_presentations_are_400(reader_sim: Any, body: dict[str, Any]) -> None:
    api, _port = await reader_sim(ReaderConfig())
    assert "error" in await present(api, body, status=400)


async def test_unplugged_reader_is_409(reader_sim: Any) -> None:
    api, port = await reader_sim(ReaderConfig(kind="rfid"))
    assert (await present(api, {"barcode": "46"}, status=400))["error"]
    response = await api.post("/faults", json={"unplug": True, "device": "reader"})
    assert response.status == 200
    await port.wait_hangup()
    assert "unplugged" in (await present(api, {"tag": "0A1B2C3D4E"}, status=409))["error"]
    response = await api.post("/faults", json={"replug": True, "device": "reader"})
    assert (await response.json())["ok"]
