"""The simulator as a real process: control.json, CLI, clean stop, fiscal memory persistence."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from hardware_sim.cli import build_parser, main
from hardware_sim.shtrih_frames import build_frame
from hardware_sim.testing import HostPort, SimProcess

ADMIN = (30).to_bytes(4, "little")
CASHIER = (1).to_bytes(4, "little")


async def command(port: HostPort, payload: bytes) -> bytes:
    port.write(build_frame(payload))
    assert await port.read(1) == b"\x06"
    reply = await port.read_frame(timeout=10)
    port.write(b"\x06")
    return reply[2:-1]


def sale_receipt() -> list[bytes]:
    line = b"\x80" + CASHIER + (2000).to_bytes(5, "little") + (1000).to_bytes(5, "little")
    line += b"\x01" + bytes(4) + b"Coffee".ljust(48, b"\0")
    close = b"\x85" + CASHIER + (2000).to_bytes(5, "little") + bytes(15 + 2 + 4) + bytes(48)
    return [b"\x8d" + CASHIER + b"\x00", line, close]


async def test_fiscal_memory_survives_restart(tmp_path: Path) -> None:
    with SimProcess(tmp_path, "--line-width", "32") as sim:
        control = json.loads((tmp_path / "control.json").read_text())
        assert control["printer"] == str(tmp_path / "printer")
        assert control["reader"] == str(tmp_path / "reader")
        assert control["pid"] == sim.proc.pid
        port = HostPort(tmp_path / "printer")
        try:
            assert (await command(port, b"\xe0" + CASHIER))[1] == 0
            for payload in sale_receipt():
                assert (await command(port, payload))[1] == 0
            # Leave a second receipt open across the power cycle.
            assert (await command(port, sale_receipt()[1]))[1] == 0
        finally:
            port.close()
    assert not (tmp_path / "control.json").exists()
    assert not (tmp_path / "printer").is_symlink() and not (tmp_path / "reader").is_symlink()
    assert (tmp_path / "printer-state.json").exists()

    with SimProcess(tmp_path) as sim:
        state = await asyncio.to_thread(sim.call, "GET", "/printer/state")
        assert state["shift"]["open"] and state["last_fiscal_document"] == 2
        assert state["mode"] == 0x08 and state["receipt"]["operations"] == 1
        port = HostPort(tmp_path / "printer")
        try:
            fs = await command(port, b"\xff\x01" + ADMIN)
            assert int.from_bytes(fs[-4:], "little") == 2  # shift-open report, receipt
            assert (await command(port, sale_receipt()[2]))[1] == 0
            assert (await command(port, b"\x41" + ADMIN))[1] == 0
        finally:
            port.close()
        docs = await asyncio.to_thread(sim.call, "GET", "/printer/documents")
        assert [(d["number"], d["kind"]) for d in docs["documents"]] == [
            (1, "shift_open"),
            (2, "receipt"),
            (3, "receipt"),
            (4, "z_report"),
        ]
        paper = await asyncio.to_thread(sim.call, "GET", "/printer/paper")
        first = next(
            p["text"] for p in paper["paper"] if p["file"] == docs["documents"][1]["paper_file"]
        )
        assert all(len(line) <= 32 for line in first.splitlines())


async def test_fiscal_memory_survives_sigkill_right_after_a_receipt(tmp_path: Path) -> None:
    with SimProcess(tmp_path) as sim:
        port = HostPort(tmp_path / "printer")
        try:
            assert (await command(port, b"\xe0" + CASHIER))[1] == 0
            for payload in sale_receipt():
                assert (await command(port, payload))[1] == 0
        finally:
            port.close()
        # Power cut the moment the host has its reply: no clean shutdown, no final save.
        assert sim.proc is not None
        sim.proc.send_signal(signal.SIGKILL)
        assert sim.proc.wait(10) == -signal.SIGKILL

    with SimProcess(tmp_path) as sim:
        docs = await asyncio.to_thread(sim.call, "GET", "/printer/documents")
        assert [(d["number"], d["kind"], d["total"]) for d in docs["documents"]] == [
            (1, "shift_open", 0), (2, "receipt", 2000)
        ]
        state = await asyncio.to_thread(sim.call, "GET", "/printer/state")
        assert state["shift"]["open"] and state["receipt"] is None
        port = HostPort(tmp_path / "printer")
        try:
            for payload in sale_receipt():
                assert (await command(port, payload))[1] == 0
            fs = await command(port, b"\xff\x01" + ADMIN)
            assert int.from_bytes(fs[-4:], "little") == 3
        finally:
            port.close()
        docs = await asyncio.to_thread(sim.call, "GET", "/printer/documents")
        assert [d["number"] for d in docs["documents"]] == [1, 2, 3]  # no gap, no duplicate
        third = await asyncio.to_thread(sim.call, "GET", "/printer/documents/3")
        assert third == docs["documents"][2]
    lines = (tmp_path / "fiscal-documents.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["number"] for line in lines] == [1, 2, 3]


def test_sigint_stops_cleanly_and_second_sim_is_refused(tmp_path: Path) -> None:
    sim = SimProcess(tmp_path).start()
    try:
        second = SimProcess(tmp_path, start_timeout=10)
        with pytest.raises(RuntimeError, match="exited with 1"):
            second.start()
        sim.proc.send_signal(signal.SIGINT)
        assert sim.proc.wait(10) == 0
    finally:
        sim.stop()
    assert not (tmp_path / "control.json").exists()


def test_every_option_has_help() -> None:
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.dest
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit):
        main(["--dir", "x", "--line-width", "50"])


def test_pyserial_client_talks_to_the_printer(tmp_path: Path) -> None:
    serial = pytest.importorskip("serial")
    with SimProcess(tmp_path) as sim:
        port = serial.Serial(sim.control["printer"], 4800, timeout=5)
        try:
            port.write(b"\x05")
            assert port.read(1) == b"\x15"
            port.write(bytes.fromhex("02 06 8D 01 00 00 00 00 8A"))
            assert port.read(7) == bytes.fromhex("06 02 03 8D 16 01 99")
            port.write(b"\x06")
        finally:
            port.close()


def test_hardware_sim_imports_nothing_of_the_project() -> None:
    import ast
    import importlib
    import pkgutil

    import hardware_sim

    forbidden = {"agent", "central", "protocol", "tillpoint"}
    package_dir = Path(hardware_sim.__file__).parent
    for module in pkgutil.iter_modules([str(package_dir)]):
        if module.name != "__main__":  # that one runs the CLI
            importlib.import_module(f"hardware_sim.{module.name}")  # no cycles
        tree = ast.parse((package_dir / f"{module.name}.py").read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{module.name} imports {name}"
