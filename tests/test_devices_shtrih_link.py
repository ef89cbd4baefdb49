"""The ENQ/ACK/NAK exchange against a scripted device, in process, without a port."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.devices.shtrih_frames import ACK, ENQ, NAK, STX, encode_frame, parse_frame
from agent.devices.shtrih_link import (
    LinkDown,
    LinkTimeout,
    LinkTimings,
    ReplyLost,
    ShtrihLink,
)

TIMINGS = LinkTimings(answer=0.1, byte=0.05, reply=0.15, deadline=5.0, retries=3)
STATUS = encode_frame(0x10, b"\x01\x00\x00\x00")
SALE = encode_frame(0x80, b"\x01\x00\x00\x00" + b"\x00" * 20)


class Device:
    """A device that follows the spec, with faults switched on by the test."""

    def __init__(self) -> None:
        self.link = ShtrihLink(self.receive, TIMINGS)
        self.buf = b""
        self.held: bytes | None = None
        self.executed: list[int] = []
        self.nak_next_frames = 0
        self.drop_next_reply = False
        self.forget_next_reply = False  # run the command, then lose the reply for good
        self.corrupt_next_reply = False
        self.silent = False
        self.received = bytearray()

    def send(self, data: bytes) -> None:
        asyncio.get_running_loop().call_soon(self.link.feed, data)

    def receive(self, data: bytes) -> None:
        self.received += data
        if self.silent:
            return
        for b in data:
            if self.buf:
                self.buf += bytes([b])
                self._frame()
            elif b == STX:
                self.buf = bytes([b])
            elif b == ENQ:
                if self.held is None:
                    self.send(bytes([NAK]))
                else:
                    self.send(bytes([ACK]) + self.held)
            elif b == ACK:
                self.held = None
            elif b == NAK:
                pass  # keep the reply for the next ENQ
            else:
                self.send(bytes([NAK]))

    def _frame(self) -> None:
        frame, _ = parse_frame(self.buf) if len(self.buf) > 1 else (None, b"")
        if frame is None:
            return
        self.buf = b""
        if self.nak_next_frames:
            self.nak_next_frames -= 1
            self.send(bytes([NAK]))
            return
        self.executed.append(frame.command)
        reply = encode_frame(frame.command, b"\x00\x01")
        self.held = reply
        out = bytes([ACK])
        if self.forget_next_reply:
            self.forget_next_reply = False
            self.held = None
        elif self.drop_next_reply:
            self.drop_next_reply = False
        elif self.corrupt_next_reply:
            self.corrupt_next_reply = False
            out += reply[:-1] + bytes([reply[-1] ^ 0x55])
        else:
            out += reply
        self.send(out)


async def test_plain_exchange() -> None:
    dev = Device()
    reply = await dev.link.request(STATUS)
    assert reply.command == 0x10 and reply.data == b"\x00\x01"
    assert dev.executed == [0x10] and dev.held is None
    assert bytes(dev.received) == bytes([ENQ]) + STATUS + bytes([ACK])


async def test_nak_makes_the_host_resend() -> None:
    dev = Device()
    dev.nak_next_frames = 2
    await dev.link.request(SALE)
    assert dev.executed == [0x80]
    assert dev.received.count(SALE) == 3


async def test_lost_reply_is_fetched_with_enq_not_rerun() -> None:
    dev = Device()
    dev.drop_next_reply = True
    reply = await dev.link.request(SALE)
    assert reply.command == 0x80 and dev.executed == [0x80] and dev.held is None


async def test_corrupt_reply_is_naked_and_fetched_again() -> None:
    dev = Device()
    dev.corrupt_next_reply = True
    await dev.link.request(SALE)
    assert dev.executed == [0x80] and dev.held is None
    assert bytes([NAK, ENQ]) in dev.received


async def test_reply_gone_for_good() -> None:
    dev = Device()
    dev.forget_next_reply = True
    with pytest.raises(ReplyLost):
        await dev.link.request(SALE)
    assert dev.executed == [0x80]
    dev.forget_next_reply = True
    await dev.link.request(STATUS, idempotent=True)  # safe to run again
    assert dev.executed == [0x80, 0x10, 0x10]


async def test_stale_reply_is_taken_before_a_new_command() -> None:
    dev = Device()
    dev.held = encode_frame(0x85, b"\x00\x01" + b"\x00" * 5)
    await dev.link.request(STATUS)
    assert dev.link.stale_replies == 1 and dev.executed == [0x10]


async def test_silence_is_no_link_within_bounded_time() -> None:
    dev = Device()
    dev.silent = True
    t0 = time.monotonic()
    with pytest.raises(LinkTimeout):
        await dev.link.request(STATUS)
    assert time.monotonic() - t0 < 2.0


async def test_port_closing_mid_request_raises_link_down_at_once() -> None:
    dev = Device()
    dev.silent = True
    task = asyncio.create_task(dev.link.request(SALE))
    await asyncio.sleep(0.02)
    dev.link.connection_lost(None)
    t0 = time.monotonic()
    with pytest.raises(LinkDown):
        await task
    assert time.monotonic() - t0 < 0.1


async def test_noise_before_the_reply_is_ignored() -> None:
    dev = Device()
    dev.drop_next_reply = True
    task = asyncio.create_task(dev.link.request(SALE))
    await asyncio.sleep(0.05)
    dev.link.feed(b"\x00\xff\x13")
    assert (await task).command == 0x80 and dev.executed == [0x80]
