"""Golden frames from docs/spec/shtrih-m.md, byte for byte, and the pure frame codec."""

from __future__ import annotations

import pytest

from hardware_sim.fiscal_memory import FiscalMemory
from hardware_sim.printer_paper import PaperRoll
from hardware_sim.shtrih_device import ShtrihDevice
from hardware_sim.shtrih_frames import (
    Command,
    InvalidFrame,
    build_frame,
    decode_text,
    encode_text,
    lrc,
    parse_frame,
    split_command,
)
from hardware_sim.shtrih_link import ShtrihLink

HOST_EXAMPLES = {
    "device type": ("02 01 FC FD", Command(0xFC, b"")),
    "short status": ("02 05 10 01 00 00 00 14", Command(0x10, bytes.fromhex("01000000"))),
    "open shift": ("02 05 E0 01 00 00 00 E4", Command(0xE0, bytes.fromhex("01000000"))),
    "open sale receipt": (
        "02 06 8D 01 00 00 00 00 8A",
        Command(0x8D, bytes.fromhex("0100000000")),
    ),
}


@pytest.mark.parametrize("name", sorted(HOST_EXAMPLES))
def test_host_examples_parse(name: str) -> None:
    raw, expected = HOST_EXAMPLES[name]
    payload, rest = parse_frame(bytes.fromhex(raw))
    assert rest == b""
    assert payload is not None
    assert split_command(payload) == expected
    assert build_frame(payload) == bytes.fromhex(raw)


def test_reply_shift_not_open_is_byte_exact(tmp_path) -> None:
    device = ShtrihDevice(FiscalMemory(), PaperRoll(tmp_path / "paper"))
    link = ShtrihLink(device.execute)
    out = link.feed(bytes.fromhex("02 06 8D 01 00 00 00 00 8A"), now=0.0)
    assert out == bytes.fromhex("06") + bytes.fromhex("02 03 8D 16 01 99")


def test_enq_on_idle_device_is_nak(tmp_path) -> None:
    link = ShtrihLink(ShtrihDevice(FiscalMemory(), PaperRoll(tmp_path)).execute)
    assert link.feed(b"\x05", now=0.0) == b"\x15"


def test_lrc_excludes_stx() -> None:
    assert lrc(bytes.fromhex("03 8D 16 01")) == 0x99


def test_parse_frame_byte_at_a_time() -> None:
    raw = bytes.fromhex("02 05 10 01 00 00 00 14")
    for cut in range(1, len(raw)):
        assert parse_frame(raw[:cut]) == (None, raw[:cut])
    assert parse_frame(raw + b"\x05") == (bytes.fromhex("10 01 00 00 00"), b"\x05")


def test_bad_lrc_and_zero_length_raise_with_rest() -> None:
    with pytest.raises(InvalidFrame) as bad:
        parse_frame(bytes.fromhex("02 01 FC FE 02"))
    assert bad.value.rest == b"\x02"
    with pytest.raises(InvalidFrame):
        parse_frame(bytes.fromhex("02 00 00"))


def test_two_byte_command_family() -> None:
    assert split_command(bytes.fromhex("FF 01 1E 00 00 00")) == Command(
        0xFF01, bytes.fromhex("1E000000")
    )
    assert Command(0xFF0A, b"").code_bytes == b"\xff\x0a"


@pytest.mark.parametrize("width", [32, 36, 40, 48])
def test_text_nul_padding_any_width(width: int) -> None:
    raw = encode_text("Бонусы: 50", width)
    assert len(raw) == width
    assert raw.startswith("Бонусы".encode("cp1251"))
    assert decode_text(raw) == "Бонусы: 50"
