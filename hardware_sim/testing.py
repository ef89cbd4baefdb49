"""Helpers for driving the simulator from the host side in tests and demos.

``HostPort`` is a bare raw-mode client of a pty (no protocol knowledge); ``SimProcess`` runs
``python -m hardware_sim`` as a real process and stops it. Both wait with deadlines, never
with fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tty
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class HostPort:
    """The host's end of a simulated serial port, opened through the symlink."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._fd)
        self._buf = bytearray()
        self._changed = asyncio.Event()
        self.hung_up = False
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The simulator closed the master (unplug): stop watching a dead fd.
            self.hung_up = True
            asyncio.get_running_loop().remove_reader(self._fd)
        self._buf += data
        self._changed.set()

    def write(self, data: bytes) -> None:
        os.write(self._fd, data)

    async def read(self, count: int, timeout: float = 3.0) -> bytes:
        """Exactly ``count`` bytes, or TimeoutError with what did arrive."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._buf) < count:
            if self.hung_up:
                raise ConnectionError(f"port hung up; got {bytes(self._buf).hex(' ')}")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"wanted {count} bytes, got {bytes(self._buf).hex(' ')}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        data = bytes(self._buf[:count])
        del self._buf[:count]
        return data

    async def read_frame(self, timeout: float = 3.0) -> bytes:
        """One STX LEN ... LRC frame, whole."""
        head = await self.read(2, timeout)
        if head[0] != 0x02:
            raise AssertionError(f"expected STX, got {head.hex(' ')}")
        return head + await self.read(head[1] + 1, timeout)

    async def wait_hangup(self, timeout: float = 3.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.hung_up:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("no hang-up")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def pending(self) -> bytes:
        return bytes(self._buf)

    def close(self) -> None:
        if not self.hung_up:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)


class SimProcess:
    """``python -m hardware_sim --dir DIR ARGS`` as a child process; use as a context manager."""

    def __init__(self, directory: Path, *args: str, start_timeout: float = 20.0) -> None:
        self.directory = directory
        self.args = args
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.control['port']}"

    def start(self) -> SimProcess:
        control = self.directory / "control.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hardware_sim", "--dir", str(self.directory), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"simulator exited with {self.proc.returncode}: {err}")
            if control.exists():
                with contextlib.suppress(ValueError):
                    data = json.loads(control.read_text())
                    if data.get("pid") == self.proc.pid:
                        self.control = data
                        return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("simulator did not write control.json in time")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stderr:
            self.proc.stderr.close()
        return self.proc.returncode

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON request to the control API; HTTP errors come back as {"status", "error"}."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return {"status": error.code, **json.loads(error.read() or b"{}")}
