"""Child processes of the demo (and of tests): started, awaited until ready, always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def tillpoint_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tillpoint", *args]


class Processes:
    """Owns the processes it starts; `stop_all` ends them, also after an exception or Ctrl-C."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **env} if env else None)
        log.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL, as a power cut would: no cleanup, no last push."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def find(self, name: str) -> subprocess.Popen | None:
        return next((p for n, p in self.procs if n == name and p.poll() is None), None)

    def reap(self, name: str, timeout: float = 10.0) -> None:
        """Wait for processes of this name that were killed to be gone, then forget them.

        A SIGKILLed process can still be dying when its HTTP connection has already reset;
        starting its successor must not mistake it for the successor dying.
        """
        for n, proc in self.procs:
            if n == name:
                proc.wait(timeout)
        self.forget_exited()

    def forget_exited(self) -> None:
        self.procs = [(n, p) for n, p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        # Agents first (they push a last batch), then the devices and the central.
        for _, proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see "
                                   f"{self.log_dir / (name + '.log')}")


async def wait_for(probe: Callable[[], T | Awaitable[T | None] | None], what: str,
                   timeout: float = 30.0, check: Callable[[], None] = lambda: None) -> T:
    """Poll `probe` (plain or async) until it returns something, with a deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        check()
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def read_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None
