"""Shtrih-M frame codec and command encoders: the spec's examples byte for byte, and fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.devices import shtrih_commands as cmd
from agent.devices.shtrih_frames import (
    STX,
    Frame,
    InvalidFrame,
    encode_frame,
    lrc,
    parse_frame,
)

GOLDEN_HOST = [
    ("get device type", cmd.encode_device_type(), "02 01 FC FD"),
    ("short status", cmd.encode_short_status(1), "02 05 10 01 00 00 00 14"),
    ("open shift", cmd.encode_open_shift(1), "02 05 E0 01 00 00 00 E4"),
    ("open sale receipt", cmd.encode_open_receipt(1, 0), "02 06 8D 01 00 00 00 00 8A"),
]


@pytest.mark.parametrize(("name", "encoded", "wire"), GOLDEN_HOST, ids=[g[0] for g in GOLDEN_HOST])
def test_golden_host_frames_encode(name: str, encoded: bytes, wire: str) -> None:
    assert encoded == bytes.fromhex(wire)


@pytest.mark.parametrize(("name", "encoded", "wire"), GOLDEN_HOST, ids=[g[0] for g in GOLDEN_HOST])
def test_golden_host_frames_parse(name: str, encoded: bytes, wire: str) -> None:
    frame, rest = parse_frame(bytes.fromhex(wire))
    assert rest == b""
    assert frame is not None
    assert encode_frame(frame.command, frame.data) == bytes.fromhex(wire)


def test_golden_reply_shift_not_open_both_ways() -> None:
    wire = bytes.fromhex("02 03 8D 16 01 99")
    frame, rest = parse_frame(wire)
    assert frame == Frame(0x8D, b"\x16\x01") and rest == b""
    assert encode_frame(0x8D, b"\x16\x01") == wire
    with pytest.raises(cmd.DeviceError) as err:
        cmd.reply_payload(frame, cmd.OPEN_RECEIPT)
    assert err.value.code == 0x16


def test_two_byte_command_sent_ff_first() -> None:
    wire = cmd.encode_simple(cmd.FS_STATUS, 30)
    assert wire[:4] == bytes([STX, 6, 0xFF, 0x01])
    assert wire[-1] == lrc(wire[1:-1])
    frame, _ = parse_frame(wire)
    assert frame == Frame(0xFF01, (30).to_bytes(4, "little"))


def test_incomplete_then_rest() -> None:
    wire = bytes.fromhex("02 05 10 01 00 00 00 14") + b"\x02\x01"
    for cut in range(1, 8):
        assert parse_frame(wire[:cut]) == (None, wire[:cut])
    frame, rest = parse_frame(wire)
    assert frame is not None and frame.command == 0x10 and rest == b"\x02\x01"


def test_bad_lrc_skips_only_the_stx() -> None:
    with pytest.raises(InvalidFrame) as err:
        parse_frame(bytes.fromhex("02 05 10 01 00 00 00 15"))
    assert err.value.skip == 1


def test_garbage_skips_to_next_stx() -> None:
    with pytest.raises(InvalidFrame) as err:
        parse_frame(b"\x00\xff\x15\x02\x01")
    assert err.value.skip == 3


def test_encode_rejects_bad_commands() -> None:
    for bad in (0xFF, 0x1FF, -1, 0x10000):
        with pytest.raises(ValueError):
            encode_frame(bad)
    with pytest.raises(ValueError):
        encode_frame(0x80, b"x" * 255)


def test_sale_line_layout() -> None:
    wire = cmd.encode_line(
        1, quantity=1500, price=12345, department=2, taxes=(1, 0, 0, 0), text="Хлеб", width=40
    )
    frame, _ = parse_frame(wire)
    assert frame is not None and frame.command == 0x80
    d = frame.data
    assert d[:4] == b"\x01\x00\x00\x00"
    assert int.from_bytes(d[4:9], "little") == 1500
    assert int.from_bytes(d[9:14], "little") == 12345
    assert d[14] == 2 and d[15:19] == b"\x01\x00\x00\x00"
    assert d[19:] == "Хлеб".encode("cp1251").ljust(40, b"\x00")
    ret, _ = parse_frame(
        cmd.encode_line(
            1, quantity=1, price=1, department=1, taxes=(), text="", width=32, is_return=True
        )
    )
    assert ret is not None and ret.command == 0x82


def test_close_receipt_layout() -> None:
    wire = cmd.encode_close_receipt(1, payments=[100, 0, 0, 50], width=32)
    frame, _ = parse_frame(wire)
    assert frame is not None and frame.command == 0x85
    d = frame.data[4:]
    pays = [int.from_bytes(d[i : i + 5], "little") for i in range(0, 20, 5)]
    assert pays == [100, 0, 0, 50]
    assert d[20:22] == b"\x00\x00" and d[22:26] == b"\x00" * 4 and len(d[26:]) == 32


def test_text_is_cut_and_padded() -> None:
    assert cmd.encode_text("x" * 60, 48) == b"x" * 48
    assert cmd.encode_text("ab", 32) == b"ab" + b"\x00" * 30
    with pytest.raises(ValueError):
        cmd.encode_text("a", 33)


def _reply(command: int, data: bytes) -> Frame:
    frame, _ = parse_frame(encode_frame(command, data))
    assert frame is not None
    return frame


def test_decode_short_status() -> None:
    data = bytes([0, 1, 0x02, 0x00, 0x28, 0x00, 5, 0, 0, 0, 0, 1, 0, 0, 0])
    st = cmd.decode_short_status(_reply(0x10, data))
    assert st.mode == 0x28 and st.document_open and st.shift_open
    assert st.operations == 0x105 and st.paper
    st = cmd.decode_short_status(_reply(0x10, data[:4] + b"\x04\x03" + data[6:]))
    assert not st.shift_open and st.submode == 3


def test_decode_fs_status() -> None:
    data = (
        bytes([0, 3, 0, 0, 1, 0, 25, 1, 2, 10, 30])
        + b"9999078900001234"
        + (4321).to_bytes(4, "little")
    )
    fs = cmd.decode_fs_status(_reply(0xFF01, data))
    assert fs.last_document == 4321 and fs.shift_open and fs.storage_number == "9999078900001234"


def test_decode_device_type_and_change() -> None:
    dt = cmd.decode_device_type(
        _reply(0xFC, bytes([0, 0, 0, 1, 0, 0xFA, 0]) + "ШТРИХ".encode("cp1251"))
    )
    assert dt.model == 0xFA and dt.name == "ШТРИХ"
    assert cmd.decode_change(_reply(0x85, b"\x00\x01" + (250).to_bytes(5, "little"))) == 250


def test_short_replies_are_malformed_not_crashes() -> None:
    for command, decode in (
        (0x10, cmd.decode_short_status),
        (0xFF01, cmd.decode_fs_status),
        (0xFC, cmd.decode_device_type),
        (0xFF0A, cmd.decode_find_document),
    ):
        with pytest.raises(cmd.MalformedReply):
            decode(_reply(command, b"\x00"))
    with pytest.raises(cmd.MalformedReply):
        cmd.reply_payload(Frame(0x10, b""), 0x10)
    with pytest.raises(cmd.MalformedReply):
        cmd.reply_payload(_reply(0x11, b"\x00\x01"), 0x10)


# -- fuzz -----------------------------------------------------------------------------------


def _drain(buf: bytes) -> list[Frame]:
    """What a receiver does with a buffer: frames out, garbage skipped, incomplete kept."""
    frames = []
    while buf:
        try:
            frame, rest = parse_frame(buf)
        except InvalidFrame as exc:
            assert exc.skip >= 1
            buf = buf[exc.skip :]
            continue
        if frame is None:
            break
        frames.append(frame)
        assert len(rest) < len(buf)
        buf = rest
    return frames


frames_st = st.builds(
    lambda cmd_, data: (cmd_, data),
    st.one_of(st.integers(0, 0xFE), st.integers(0xFF00, 0xFFFF)),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise_and_every_frame_checks(data: bytes) -> None:
    for frame in _drain(data):
        # anything taken from noise must be a frame with a correct LRC, re-encodable
        assert encode_frame(frame.command, frame.data) in data


@settings(max_examples=200, deadline=None)
@given(st.lists(frames_st, min_size=1, max_size=4), st.binary(max_size=8))
def test_fuzz_frames_after_garbage_are_found(frames: list[tuple[int, bytes]], junk: bytes) -> None:
    junk = junk.replace(bytes([STX]), b"")
    wire = junk + b"".join(encode_frame(c, d) for c, d in frames)
    assert [(f.command, f.data) for f in _drain(wire)] == frames


@settings(max_examples=300, deadline=None)
@given(frames_st, st.integers(2, 200), st.integers(1, 255))
def test_fuzz_one_corrupted_byte_is_never_taken_as_a_frame(
    frame: tuple[int, bytes], pos: int, xor: int
) -> None:
    # a single corrupted byte in CMD, DATA or LRC always fails the LRC (a corrupted LEN can
    # pass by chance, 1 in 256, which is the protocol's own limit)
    wire = bytearray(encode_frame(*frame))
    pos = 2 + pos % (len(wire) - 2)
    wire[pos] ^= xor
    with pytest.raises(InvalidFrame):
        parse_frame(bytes(wire))


@settings(max_examples=100, deadline=None)
@given(st.lists(frames_st, min_size=1, max_size=3))
def test_fuzz_byte_at_a_time_equals_all_at_once(frames: list[tuple[int, bytes]]) -> None:
    wire = b"".join(encode_frame(c, d) for c, d in frames)
    buf = b""
    got: list[Frame] = []
    for i in range(len(wire)):
        buf += wire[i : i + 1]
        while buf:
            try:
                frame, rest = parse_frame(buf)
            except InvalidFrame as exc:
                buf = buf[exc.skip :]
                continue
            if frame is None:
                break
            got.append(frame)
            buf = rest
    assert [(f.command, f.data) for f in got] == frames


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0x10, 0xFF01, 0xFC, 0x85, 0xFF0A]), st.binary(max_size=60))
def test_fuzz_reply_decoders_raise_only_their_errors(command: int, data: bytes) -> None:
    decoders = {
        0x10: cmd.decode_short_status,
        0xFF01: cmd.decode_fs_status,
        0xFC: cmd.decode_device_type,
        0x85: cmd.decode_change,
        0xFF0A: cmd.decode_find_document,
    }
    with contextlib.suppress(cmd.DeviceError, cmd.MalformedReply):
        decoders[command](Frame(command, data))
