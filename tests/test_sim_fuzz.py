"""Fuzzing the simulator's parsers: random and mutated bytes never crash, hang or run a
command that was not sent as a whole, valid frame."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware_sim.card_reader import ReaderConfig, ReadError, line_read, rfid_frame
from hardware_sim.fiscal_memory import FiscalMemory
from hardware_sim.printer_paper import PaperRoll
from hardware_sim.shtrih_device import ShtrihDevice
from hardware_sim.shtrih_frames import InvalidFrame, build_frame, parse_frame
from hardware_sim.shtrih_link import BYTE_TIMEOUT_S, ShtrihLink

FUZZ = settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CASHIER = (1).to_bytes(4, "little")
ADMIN = (30).to_bytes(4, "little")
VALID_PAYLOADS = [
    b"\xfc",
    b"\x10" + CASHIER,
    b"\xe0" + CASHIER,
    b"\x8d" + CASHIER + b"\x00",
    b"\x80" + CASHIER + (1000).to_bytes(5, "little") + (100).to_bytes(5, "little") + bytes(5),
    b"\x85" + CASHIER + (100).to_bytes(5, "little") + bytes(21),
    b"\x88" + CASHIER,
    b"\xff\x01" + ADMIN,
    b"\xff\x0a" + ADMIN + b"\x01\x00\x00\x00",
    b"\x41" + ADMIN,
]


@pytest.fixture(scope="module")
def paper_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def fresh_device(paper_dir: Path) -> ShtrihDevice:
    return ShtrihDevice(FiscalMemory(), PaperRoll(paper_dir))


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    """Valid frames, control bytes and garbage, with bytes flipped, dropped or inserted."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(VALID_PAYLOADS).map(build_frame),
                st.sampled_from([b"\x02", b"\x05", b"\x06", b"\x15", b"\x00"]),
                st.binary(max_size=12),
            ),
            max_size=8,
        )
    )
    data = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif action == "drop":
            del data[i]
        else:
            data.insert(i, draw(st.integers(0, 255)))
    return bytes(data)


def assert_well_formed(out: bytes) -> None:
    """What the device writes is only ACK, NAK and whole frames with a good LRC."""
    while out:
        if out[0] in (0x06, 0x15):
            out = out[1:]
            continue
        payload, out = parse_frame(out)
        assert payload is not None


@FUZZ
@given(st.binary(max_size=300))
def test_parse_frame_only_returns_or_raises_invalid(data: bytes) -> None:
    buf = b"\x02" + data
    try:
        payload, rest = parse_frame(buf)
    except InvalidFrame as error:
        assert len(error.rest) < len(buf)
        return
    if payload is None:
        assert rest == buf
    else:
        assert build_frame(payload) + rest == buf


@FUZZ
@given(
    stream=mutated_stream(),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    gaps=st.lists(st.sampled_from([0.0, 0.01, BYTE_TIMEOUT_S * 2]), max_size=6),
)
def test_link_runs_only_whole_valid_frames(
    paper_dir: Path, stream: bytes, cuts: list[int], gaps: list[float]
) -> None:
    executed: list[bytes] = []
    device = fresh_device(paper_dir)

    def execute(payload: bytes) -> bytes:
        executed.append(payload)
        return device.execute(payload)

    link = ShtrihLink(execute)
    now = 0.0
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        now += gaps[i] if i < len(gaps) else 0.0
        assert_well_formed(link.feed(stream[start:end], now))
    for payload in executed:
        # No phantom command: whatever ran was sent as one intact frame.
        assert build_frame(payload) in stream


@FUZZ
@given(payload=st.binary(min_size=1, max_size=255))
def test_device_answers_any_payload_with_its_command(paper_dir: Path, payload: bytes) -> None:
    reply = fresh_device(paper_dir).execute(payload)
    code = payload[:2] if payload[0] == 0xFF and len(payload) > 1 else payload[:1]
    assert reply.startswith(code)
    assert 1 <= len(reply) <= 255
    build_frame(reply)


@FUZZ
@given(payloads=st.lists(st.sampled_from(VALID_PAYLOADS) | st.binary(min_size=1), max_size=20))
def test_device_state_stays_consistent(paper_dir: Path, payloads: list[bytes]) -> None:
    device = fresh_device(paper_dir)
    for payload in payloads:
        device.execute(payload)
    numbers = [d.number for d in device.memory.documents]
    assert numbers == list(range(1, len(numbers) + 1))
    assert device.memory.last_document == len(numbers)
    if device.memory.open_receipt is not None:
        assert device.memory.shift_open


@FUZZ
@given(st.text(max_size=40))
def test_reader_framing_never_emits_unframed_junk(text: str) -> None:
    config = ReaderConfig(stx_etx=True)
    try:
        frame = line_read(text, config)
    except ReadError:
        return
    assert frame[0] == 0x02 and frame[-2:] == b"\x03\r" and frame.count(b"\x03") == 1
    with contextlib.suppress(ReadError):
        assert len(rfid_frame(text)) == 14
