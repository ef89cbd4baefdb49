"""A raw-mode pseudo-terminal with a stable symlink: the simulated device's serial port.

The simulator holds the master end; clients open the symlink (the slave end) as they would
``/dev/ttyUSB0``. Unplugging closes the master, so a client sees a hang-up, and removes the
symlink; plugging in again makes a new pty behind the same symlink path.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import os
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

STALE_AFTER_S = 1.0


class PtyPort:
    def __init__(self, link: Path, on_data: Callable[[bytes], None]) -> None:
        self.link = link
        self._on_data = on_data
        self._master: int | None = None
        self._slave: int | None = None
        self.tty_name: str | None = None
        self._last_write = 0.0

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def open(self) -> None:
        if self._master is not None:
            return
        master, slave = os.openpty()
        # Raw: no echo, no CR/LF translation, no signals from 0x03 and friends. The slave stays
        # open here, so the master does not see EIO between two clients opening the port.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.tty_name = os.ttyname(slave)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(self.tty_name, tmp)
        os.replace(tmp, self.link)
        asyncio.get_running_loop().add_reader(master, self._readable)
        log.debug("%s -> %s", self.link, self.tty_name)

    def close(self) -> None:
        if self._master is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(self.link) == self.tty_name:
                self.link.unlink()
        self.tty_name = None

    def write(self, data: bytes) -> bool:
        """Write everything or drop it (a client that does not read loses bytes, as on a wire)."""
        if self._master is None or not data:
            return False
        self._drop_stale_output()
        self._last_write = time.monotonic()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                log.warning("%s: output buffer full, %d bytes dropped", self.link, len(view))
                return False
            except OSError as error:
                log.warning("%s: write failed: %s", self.link, error)
                return False
            view = view[written:]
        return True

    def _drop_stale_output(self) -> None:
        """Forget bytes that no client read for a while.

        Because the simulator keeps the slave end open, the kernel would keep what we sent while
        no client had the port open and hand it to the next one (a phantom card read, an old
        reply). On a real wire those bytes are lost; this makes the pty behave the same.
        """
        if self._slave is None or time.monotonic() - self._last_write < STALE_AFTER_S:
            return
        pending = array.array("i", [0])
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._slave, termios.FIONREAD, pending)
            if pending[0]:
                termios.tcflush(self._slave, termios.TCIFLUSH)
                log.debug("%s: dropped %d unread bytes", self.link, pending[0])

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as error:
            log.warning("%s: read failed: %s", self.link, error)
            return
        if not data:
            return
        try:
            self._on_data(data)
        except Exception:  # the port outlives a bug in whatever handles its bytes
            log.exception("%s: handler failed", self.link)
