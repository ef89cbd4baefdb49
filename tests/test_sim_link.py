"""The device side of the link layer as a pure state machine (time is an argument)."""

from __future__ import annotations

from hardware_sim.faults import ReplyFaults
from hardware_sim.shtrih_frames import build_frame
from hardware_sim.shtrih_link import BYTE_TIMEOUT_S, ShtrihLink

ACK, NAK, ENQ = b"\x06", b"\x15", b"\x05"
STATUS = bytes.fromhex("02 05 10 01 00 00 00 14")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, payload: bytes) -> bytes:
        self.calls.append(payload)
        return bytes([payload[0], 0x00, 0x01, len(self.calls)])


def make_link(faults: ReplyFaults | None = None) -> tuple[ShtrihLink, Recorder]:
    recorder = Recorder()
    tap = faults.tap if faults else (lambda frame: frame)
    return ShtrihLink(recorder, tap), recorder


def test_command_is_acked_then_answered_once() -> None:
    link, rec = make_link()
    out = link.feed(STATUS, 0.0)
    assert out == ACK + build_frame(bytes([0x10, 0, 1, 1]))
    assert link.feed(ACK, 0.01) == b""
    assert link.feed(ENQ, 0.02) == NAK  # reply taken: idle again
    assert len(rec.calls) == 1


def test_bad_lrc_is_naked_and_not_run() -> None:
    link, rec = make_link()
    assert link.feed(STATUS[:-1] + b"\x00", 0.0) == NAK
    assert rec.calls == []
    assert link.feed(STATUS, 0.01).startswith(ACK)


def test_enq_fetches_unacknowledged_reply_without_rerunning() -> None:
    link, rec = make_link()
    reply = link.feed(STATUS, 0.0)[1:]
    assert link.feed(ENQ, 0.1) == ACK + reply
    assert link.feed(ENQ, 0.2) == ACK + reply
    assert link.feed(ACK, 0.3) == b""
    assert len(rec.calls) == 1


def test_host_nak_on_reply_waits_for_enq() -> None:
    link, rec = make_link()
    reply = link.feed(STATUS, 0.0)[1:]
    assert link.feed(NAK, 0.01) == b""  # nothing until the host asks
    assert link.feed(ENQ, 0.02) == ACK + reply
    assert len(rec.calls) == 1


def test_any_other_byte_on_idle_is_nak() -> None:
    link, _ = make_link()
    assert link.feed(b"\x00", 0.0) == NAK
    assert link.feed(b"\x00\xff\x06", 0.1) == NAK * 3


def test_byte_timeout_ends_partial_frame() -> None:
    link, rec = make_link()
    assert link.feed(STATUS[:4], 0.0) == b""
    # The rest arrives too late: it is not part of that frame. 0x00 0x00 0x00 0x14 are
    # four stray bytes to an idle device.
    late = 0.0 + BYTE_TIMEOUT_S + 0.01
    assert link.feed(STATUS[4:], late) == NAK * 4
    assert rec.calls == []
    assert link.feed(STATUS, late + 1).startswith(ACK)


def test_slow_but_in_time_bytes_make_a_frame() -> None:
    link, rec = make_link()
    out = b""
    for i, byte in enumerate(STATUS):
        out += link.feed(bytes([byte]), i * BYTE_TIMEOUT_S * 0.8)
    assert out.startswith(ACK)
    assert len(rec.calls) == 1


def test_dropped_reply_is_fetched_with_enq() -> None:
    faults = ReplyFaults(drop_next_reply=True)
    link, rec = make_link(faults)
    assert link.feed(STATUS, 0.0) == ACK
    assert link.feed(ENQ, 0.5) == ACK + build_frame(bytes([0x10, 0, 1, 1]))
    assert len(rec.calls) == 1


def test_corrupted_reply_then_true_reply_after_nak_and_enq() -> None:
    faults = ReplyFaults(corrupt_next_reply=True)
    link, _ = make_link(faults)
    good = build_frame(bytes([0x10, 0, 1, 1]))
    out = link.feed(STATUS, 0.0)
    assert out[:-1] == ACK + good[:-1]
    assert out[-1] != good[-1]
    assert link.feed(NAK, 0.01) == b""
    assert link.feed(ENQ, 0.02) == ACK + good


def test_new_command_replaces_held_reply() -> None:
    link, rec = make_link()
    link.feed(STATUS, 0.0)
    second = link.feed(STATUS, 0.1)
    assert second == ACK + build_frame(bytes([0x10, 0, 1, 2]))
    assert len(rec.calls) == 2
