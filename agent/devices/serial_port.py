"""One object owns one serial port: it opens it, hands bytes up, and knows when it is gone.

pyserial's asyncio layer marks its transport closing at once but closes the file descriptor
later, in an executor, and only then calls `connection_lost`. `SerialConnection.closed` is
resolved from `connection_lost`, so whoever reopens the same path after awaiting it does not
race the old descriptor.

A pulled cable shows up either as a read error or, for a device behind a symlink (a
USB-serial adapter's by-id path, a simulator's pty), as the path vanishing or pointing at
another device; the watchdog catches the second kind, which a silent line would never report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import serial
import serial_asyncio_fast

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.2


class PortGone(Exception):
    """The port's path no longer leads to the device that was opened."""


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_dev, st.st_ino, st.st_rdev)


class SerialConnection(asyncio.Protocol):
    def __init__(self, path: str, on_data: Callable[[bytes], None]) -> None:
        self.path = path
        self._on_data = on_data
        self._transport: serial_asyncio_fast.SerialTransport | None = None
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[BaseException | None] = loop.create_future()
        self._made = loop.create_future()
        self._identity: tuple[int, int, int] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.lost_reason: BaseException | None = None

    @classmethod
    async def open(
        cls, path: str, *, baudrate: int, on_data: Callable[[bytes], None]
    ) -> SerialConnection:
        """Open `path`; raises OSError or serial.SerialException if it cannot."""
        loop = asyncio.get_running_loop()
        conn = cls(path, on_data)
        ser = await loop.run_in_executor(
            None, lambda: serial.Serial(path, baudrate=baudrate, timeout=0, exclusive=True)
        )
        try:
            conn._identity = _identity(os.fstat(ser.fileno()))
        except OSError:
            ser.close()
            raise
        await serial_asyncio_fast.connection_for_serial(loop, lambda: conn, ser)
        await conn._made
        conn._watch = loop.create_task(conn._watch_path(), name=f"watch {path}")
        return conn

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._made.done():
            self._made.set_result(None)

    def data_received(self, data: bytes) -> None:
        # The code above us must not take the port down with it.
        try:
            self._on_data(data)
        except Exception:
            log.exception("handler of serial data failed on %s", self.path)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if exc is not None and self.lost_reason is None:
            self.lost_reason = exc
        if not self.closed.done():
            self.closed.set_result(self.lost_reason)
        if self._watch is not None:
            self._watch.cancel()

    # -- use -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.is_open:
            raise ConnectionError("port closed")
        assert self._transport is not None
        self._transport.write(data)

    async def close(self, timeout: float = 2.0) -> None:
        """Close and wait until the descriptor is really closed (or `timeout`)."""
        if self._transport is not None and not self._transport.is_closing():
            # abort, not close: close() would flush first, and draining a hung-up pty or a
            # dead adapter can block the executor thread
            self._transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)

    async def _watch_path(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                same = _identity(os.stat(self.path)) == self._identity
            except OSError:
                same = False
            if not same:
                log.info("%s disappeared or changed; closing", self.path)
                self.lost_reason = PortGone(self.path)
                if self._transport is not None and not self._transport.is_closing():
                    self._transport.abort()  # connection_lost resolves `closed` once it is
                elif not self.closed.done():
                    self.closed.set_result(self.lost_reason)
                return
