"""Runs a simulator until SIGTERM/SIGINT: ports, control API, control.json, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from hardware_sim.control_api import create_app
from hardware_sim.fiscal_memory import write_json_atomic
from hardware_sim.simulator import SimOptions, Simulator

log = logging.getLogger("hardware_sim")

CONTROL_FILE = "control.json"
LOCK_FILE = ".sim.lock"


class AlreadyRunning(RuntimeError):
    pass


def _lock(directory: Path) -> int:
    """One simulator per directory: the second would steal the symlinks of the first."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another simulator runs in {directory}") from None
    return fd


async def run(options: SimOptions, stop: asyncio.Event | None = None) -> None:
    directory = options.directory
    directory.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(directory)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    control = directory / CONTROL_FILE
    sim = Simulator(options)
    runner = web.AppRunner(create_app(sim), access_log=None)
    try:
        sim.start()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", options.control_port)
        await site.start()
        port = runner.addresses[0][1]
        info = {
            "port": port,
            "pid": os.getpid(),
            "printer": str(sim.printer_port.link),
            "reader": str(sim.reader_port.link),
        }
        write_json_atomic(control, info)
        log.info(
            "hardware_sim ready: printer=%s (%s) reader=%s (%s, %s) control=http://127.0.0.1:%d",
            sim.printer_port.link,
            sim.printer_port.tty_name,
            sim.reader_port.link,
            sim.reader_port.tty_name,
            options.reader.kind,
            port,
        )
        await stop.wait()
    finally:
        # Remove control.json first: whoever waits on it must not find a dead simulator's port.
        with contextlib.suppress(FileNotFoundError):
            control.unlink()
        await runner.cleanup()
        sim.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        os.close(lock_fd)
        log.info("hardware_sim stopped")
