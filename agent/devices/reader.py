"""The card reader driver: a port, a framer, tokenisation, and a callback per card.

The card number is turned into a card token here, in the driver, and goes no further: the
callback gets a `CardPresented` with the token, the kind and the last four digits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agent.devices import card_frames as cf
from agent.devices.serial_port import SerialConnection
from agent.devices.supervisor import Supervisor

log = logging.getLogger(__name__)


class CardTokens(Protocol):
    def tokens(self, number: str) -> list[tuple[int, str]]:
        """The number's token under each card key version, newest first."""
        ...


@dataclass(frozen=True)
class CardPresented:
    tokens: tuple[str, ...]  # under each card key, newest first: identification tries each
    kind: Literal["loyalty", "bank", "rfid"]
    last4: str
    at: float  # time.monotonic() of the read

    @property
    def token(self) -> str:
        """The token under the newest key: what a new card gets."""
        return self.tokens[0]


class CardReader:
    def __init__(
        self,
        port: str,
        *,
        keys: CardTokens,
        on_card: Callable[[CardPresented], None],
        kind: Literal["line", "rfid"] = "line",
        suffix: cf.Suffix = "cr",
        stx_etx: bool = False,
        aim: bool = False,
        baudrate: int = 9600,
        repeat_window: float = 1.0,
        loyalty_ranges: tuple[str, ...] = (),
    ) -> None:
        if kind not in ("line", "rfid"):
            raise ValueError("kind must be 'line' or 'rfid'")
        self.port = port
        self.kind = kind
        self.suffix = suffix
        self.stx_etx = stx_etx
        self.aim = aim
        self.loyalty_ranges = loyalty_ranges
        self.baudrate = baudrate
        self._keys = keys
        self._on_card = on_card
        self._repeat_window = repeat_window
        self._repeats = cf.RepeatFilter(repeat_window)
        self._connected = False
        self.reads = 0
        self._dropped = 0  # decode failures; framing drops are added from the framer
        self._framer: cf.LineFramer | cf.RfidFramer | None = None
        self._framing_dropped = 0  # from framers of earlier connections
        self._last_error: str | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._supervisor = Supervisor(f"reader {port}", self._session)
        self.connected_at: float | None = None

    def __repr__(self) -> str:
        return f"CardReader({self.port!r}, kind={self.kind!r}, connected={self._connected})"

    async def start(self) -> None:
        """Start the reconnect supervisor; never fails because the port is absent."""
        self._supervisor.start()

    async def stop(self) -> None:
        await self._supervisor.stop()

    @property
    def sessions_lost(self) -> int:
        """Connections to the device that failed or broke since the agent started."""
        return self._supervisor.sessions_lost

    @property
    def dropped(self) -> int:
        framer = self._framer.dropped if self._framer is not None else 0
        return self._dropped + self._framing_dropped + framer

    def state(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "reads": self.reads,
            "dropped": self.dropped,
            "last_error": self._last_error
            or (None if self._connected else self._supervisor.last_error),
        }

    async def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._connected:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # -- session ---------------------------------------------------------------------------

    def _new_framer(self) -> cf.LineFramer | cf.RfidFramer:
        if self.kind == "rfid":
            return cf.RfidFramer()
        return cf.LineFramer(self.suffix, stx_etx=self.stx_etx)

    async def _session(self, connected: Callable[[], None]) -> None:
        framer = self._new_framer()
        conn = await SerialConnection.open(self.port, baudrate=self.baudrate, on_data=self._data)
        if self._framer is not None:
            self._framing_dropped += self._framer.dropped
        self._framer = framer
        self._connected = True
        self._last_error = None
        self.connected_at = time.monotonic()
        connected()
        try:
            reason = await conn.closed
            if reason is not None:
                self._last_error = f"port lost: {type(reason).__name__}"
        finally:
            self._connected = False
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            await conn.close()

    # -- data ------------------------------------------------------------------------------

    def _data(self, data: bytes) -> None:
        framer = self._framer
        if framer is None:
            return
        now = time.monotonic()
        if isinstance(framer, cf.RfidFramer):
            for read in framer.feed(data, now):
                self._card(read, now)
            return
        for raw in framer.feed(data, now):
            self._line(raw, now)
        if framer.pending and framer.suffix == "none" and not framer.stx_etx:
            # a read without a suffix ends with a pause: look again once it has passed
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(framer.pause, self._flush, framer)

    def _flush(self, framer: cf.LineFramer) -> None:
        now = time.monotonic()
        for raw in framer.flush(now):
            self._line(raw, now)

    def _line(self, raw: bytes, now: float) -> None:
        try:
            read = cf.decode_line(raw, aim=self.aim, loyalty_ranges=self.loyalty_ranges)
        except cf.InvalidRead as exc:
            self._dropped += 1
            log.info("card read dropped: %s", exc)  # names the failed check, not the data
            return
        self._card(read, now)

    def _card(self, read: cf.CardRead, now: float) -> None:
        tokens = tuple(token for _, token in self._keys.tokens(read.number))
        if not tokens:
            self._dropped += 1
            log.warning("card read dropped: no card key yet (the central sends it)")
            return
        if self.kind == "rfid" and not self._repeats.accept(tokens[0], now):
            return
        self.reads += 1
        event = CardPresented(tokens=tokens, kind=read.kind, last4=read.last4, at=now)
        log.info("card presented: %s ...%s", event.kind, event.last4)
        try:
            self._on_card(event)
        except Exception:
            log.exception("card callback failed")
