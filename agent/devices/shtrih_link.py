"""The Shtrih-M ENQ/ACK/NAK exchange over any byte transport.

The link does not own the port: `SerialConnection` does, and hands every byte it reads to
`feed`. The link writes through the `write` callable it was given. One request runs at a
time; a lost reply is fetched with ENQ, so a command is never run twice by the link itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.devices.shtrih_frames import ACK, ENQ, NAK, STX, Frame, InvalidFrame, parse_frame

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The exchange failed below the command level."""


class LinkDown(LinkError):
    """The port is closed."""


class LinkTimeout(LinkError):
    """The device does not answer: no link."""


class ReplyLost(LinkError):
    """The device took the command but holds no reply: whether it ran is unknown."""


@dataclass(frozen=True)
class LinkTimings:
    # Seconds. Generous for a loaded host talking to a pty; a real device answers ENQ in ms.
    answer: float = 0.5  # ENQ -> ACK/NAK, frame -> ACK/NAK
    byte: float = 0.25  # between the bytes of one frame
    reply: float = 2.0  # command taken -> reply's STX, before probing with ENQ
    deadline: float = 60.0  # one request, all retries included
    retries: int = 3


class ShtrihLink:
    def __init__(self, write: Callable[[bytes], None], timings: LinkTimings | None = None) -> None:
        self._write = write
        self.timings = timings or LinkTimings()
        self._buf = bytearray()
        self._data = asyncio.Event()
        self._lost: BaseException | None = None
        self._lock = asyncio.Lock()
        #: replies the device held from an earlier exchange, taken and discarded by `_sync`
        self.stale_replies = 0

    # -- fed by the port owner -----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._data.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = exc or LinkDown("port closed")
        self._data.set()

    @property
    def is_down(self) -> bool:
        return self._lost is not None

    # -- byte level ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._lost is not None:
            raise LinkDown("port closed")
        try:
            self._write(data)
        except OSError as exc:  # ConnectionError included: the port went away under us
            self._lost = exc
            raise LinkDown("port closed") from exc

    async def _read_byte(self, timeout: float) -> int | None:
        """The next byte, or None after `timeout` seconds of silence."""
        end = time.monotonic() + timeout
        while not self._buf:
            if self._lost is not None:
                raise LinkDown("port closed")
            left = end - time.monotonic()
            if left <= 0:
                return None
            self._data.clear()
            try:
                async with asyncio.timeout(left):
                    await self._data.wait()
            except TimeoutError:
                return None
        b = self._buf[0]
        del self._buf[0]
        return b

    async def _read_frame_after_stx(self) -> Frame | None:
        """The rest of a frame whose STX was just read; None if it is bad or cut short."""
        raw = bytearray([STX])
        length = await self._read_byte(self.timings.byte)
        if length is None:
            return None
        raw.append(length)
        for _ in range(length + 1):
            b = await self._read_byte(self.timings.byte)
            if b is None:
                return None
            raw.append(b)
        try:
            frame, _rest = parse_frame(bytes(raw))
        except InvalidFrame:
            return None
        return frame

    async def _wait_stx(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while True:
            b = await self._read_byte(max(0.0, end - time.monotonic()))
            if b is None:
                return False
            if b == STX:
                return True
            # anything else before a reply is line noise or a late control byte

    # -- exchange --------------------------------------------------------------------------

    async def _enq(self) -> int | None:
        """Send ENQ; the first meaningful answer (ACK, NAK, STX) or None on silence."""
        self._buf.clear()
        self._send(bytes([ENQ]))
        end = time.monotonic() + self.timings.answer
        while True:
            b = await self._read_byte(max(0.0, end - time.monotonic()))
            if b is None or b in (ACK, NAK, STX):
                return b

    async def _take_reply(self, first: int | None) -> Frame | None:
        """After ENQ answered ACK (or STX), read the held reply and acknowledge it."""
        if first != STX and not await self._wait_stx(self.timings.reply):
            return None
        frame = await self._read_frame_after_stx()
        self._send(bytes([ACK if frame is not None else NAK]))
        return frame

    async def _sync(self) -> None:
        """Bring the device to idle: ENQ until NAK, taking any reply it still holds."""
        silent = 0
        while True:
            b = await self._enq()
            if b == NAK:
                return
            if b is None:
                silent += 1
                if silent >= self.timings.retries:
                    raise LinkTimeout("no answer to ENQ")
                continue
            # ACK or STX: a reply nobody took; take it so the device goes idle
            if await self._take_reply(b) is not None:
                self.stale_replies += 1
                log.warning("printer held a reply from an earlier command; discarded")

    async def request(self, frame: bytes, *, idempotent: bool = False) -> Frame:
        """Send one command frame and return the reply frame.

        Raises LinkDown, LinkTimeout, or ReplyLost (the device took a non-idempotent command
        and has no reply to give: the caller must check the device's state).
        """
        async with self._lock:
            try:
                async with asyncio.timeout(self.timings.deadline):
                    return await self._request(frame, idempotent)
            except TimeoutError as exc:
                raise LinkTimeout("request deadline passed") from exc

    async def _request(self, frame: bytes, idempotent: bool) -> Frame:
        t = self.timings
        await self._sync()
        sends = 0
        while True:
            sends += 1
            if sends > t.retries + 1:
                raise LinkTimeout("the device does not take the command")
            taken = await self._send_command(frame)
            if taken is False:
                continue  # NAK or silence with the device idle: send again
            reply = await self._await_reply(first=taken)
            if reply is not None:
                return reply
            # The device is idle and holds no reply: the command was taken but its reply
            # is gone. Running it again is safe only if it changes nothing.
            if not idempotent:
                raise ReplyLost("reply lost and not held by the device")
            await self._sync()

    async def _send_command(self, frame: bytes) -> bool | int:
        """True if the device ACKed, STX if its reply started at once, False to resend."""
        self._buf.clear()
        self._send(frame)
        end = time.monotonic() + self.timings.answer
        while True:
            b = await self._read_byte(max(0.0, end - time.monotonic()))
            if b == ACK:
                return True
            if b == NAK:
                return False
            if b == STX:
                return STX  # the ACK was lost on the way; the reply is coming
            if b is None:
                break
        # No answer to the frame: ask the device whether it took it.
        silent = 0
        while True:
            b = await self._enq()
            if b == NAK:
                return False  # idle, nothing held: it did not take the frame
            if b in (ACK, STX):
                return STX if b == STX else True
            silent += 1
            if silent >= self.timings.retries:
                raise LinkTimeout("no answer to ENQ")

    async def _await_reply(self, first: bool | int) -> Frame | None:
        """The reply to a taken command; None if the device ends up idle without one."""
        t = self.timings
        have_stx = first == STX
        silent = 0
        while True:
            if have_stx or await self._wait_stx(t.reply):
                frame = await self._read_frame_after_stx()
                if frame is not None:
                    self._send(bytes([ACK]))
                    return frame
                # bad LRC or cut short: NAK, then the device waits for ENQ to resend
                self._send(bytes([NAK]))
            have_stx = False
            b = await self._enq()
            if b == NAK:
                return None
            if b == STX:
                have_stx = True
            elif b is None:
                silent += 1
                if silent >= t.retries:
                    raise LinkTimeout("no answer to ENQ while waiting for a reply")
            else:
                silent = 0  # ACK: the reply is held or still being prepared
