"""Device side of the Shtrih-M link layer (ENQ/ACK/NAK, held replies, byte timeout).

A pure state machine: bytes and the current monotonic time go in, bytes to write come out.
It knows nothing of ptys or asyncio; the command layer is handed in as ``execute``.
"""

from __future__ import annotations

from collections.abc import Callable

from hardware_sim.shtrih_frames import ACK, ENQ, NAK, STX, InvalidFrame, build_frame, parse_frame

BYTE_TIMEOUT_S = 0.05

Execute = Callable[[bytes], bytes]
"""Runs one command payload (CMD + DATA) and returns the reply payload (CMD + DATA)."""

ReplyTap = Callable[[bytes], bytes | None]
"""Sees every reply frame before it is written: returns the bytes to send, or None to drop.

The fault injector lives here; the held copy of the reply stays intact, so a host that NAKs a
corrupted reply or ENQs after a dropped one gets the true reply.
"""


def _pass_through(frame: bytes) -> bytes | None:
    return frame


class ShtrihLink:
    """One device's end of the link: call ``feed`` with what the host wrote."""

    def __init__(self, execute: Execute, tap: ReplyTap = _pass_through) -> None:
        self._execute = execute
        self._tap = tap
        self._partial = bytearray()
        self._last_byte_at = float("-inf")
        self._held: bytes | None = None
        self._awaiting_ack = False

    @property
    def holds_reply(self) -> bool:
        return self._held is not None

    def reset(self) -> None:
        """Forget everything on the wire (a cable pull); a held reply is lost with it."""
        self._partial.clear()
        self._held = None
        self._awaiting_ack = False

    def feed(self, data: bytes, now: float) -> bytes:
        out = bytearray()
        if self._partial and now - self._last_byte_at > BYTE_TIMEOUT_S:
            # The host went quiet mid-frame: what we have is not a frame.
            self._partial.clear()
        if data:
            self._last_byte_at = now
        for byte in data:
            if self._partial:
                self._partial.append(byte)
                self._try_complete(out)
            elif byte == STX:
                self._partial.append(byte)
            elif byte == ENQ:
                self._on_enq(out)
            elif byte == ACK and self._awaiting_ack:
                self._held = None
                self._awaiting_ack = False
            elif byte == NAK and self._awaiting_ack:
                # The host rejected the reply: keep it and wait for ENQ to send it again.
                self._awaiting_ack = False
            else:
                out.append(NAK)
        return bytes(out)

    def _on_enq(self, out: bytearray) -> None:
        if self._held is None:
            out.append(NAK)
            return
        out.append(ACK)
        self._send(self._held, out)

    def _try_complete(self, out: bytearray) -> None:
        try:
            payload, _rest = parse_frame(bytes(self._partial))
        except InvalidFrame:
            self._partial.clear()
            out.append(NAK)
            return
        if payload is None:
            return
        self._partial.clear()
        out.append(ACK)
        reply = build_frame(self._execute(payload))
        self._held = reply
        self._awaiting_ack = False
        self._send(reply, out)

    def _send(self, frame: bytes, out: bytearray) -> None:
        sent = self._tap(frame)
        if sent is None:
            self._awaiting_ack = False
            return
        out += sent
        self._awaiting_ack = True
