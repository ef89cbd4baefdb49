"""The `tillpoint` command: every sub-command has help; the unit files pass systemd's check."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tillpoint.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def all_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from all_commands(sub, (*prefix, name))


def test_every_command_has_help_text():
    commands = list(all_commands(build_parser()))
    names = {" ".join(c) for c, _ in commands}
    for required in ("central run", "agent run", "agent enroll", "agent status", "sim run",
                     "demo", "agent journal verify", "agent shift close"):
        assert required in names
    helpless = [" ".join(c) for c, sub in commands if not (sub.description or _help_of(c))]
    assert helpless == []


def _help_of(command: tuple[str, ...]) -> str | None:
    parser = build_parser()
    for name in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in sub._choices_actions}
        if not helps.get(name):
            return None
        parser = sub.choices[name]
    return "ok"


def test_sim_run_help_reaches_the_simulator():
    out = subprocess.run([sys.executable, "-m", "tillpoint", "sim", "run", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--dir" in out.stdout


def test_agent_commands_on_a_till_that_is_not_enrolled_say_so(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "tillpoint", "agent", "run", "--state",
                          str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not enrolled" in out.stderr
    out = subprocess.run([sys.executable, "-m", "tillpoint", "agent", "status", "--state",
                          str(tmp_path), "--pos-port", "1"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert json.loads(out.stdout)["running"] is False


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", sorted(p.name for p in (ROOT / "systemd").glob("*.service")))
def test_unit_file_passes_systemd_analyze_verify(unit: str, tmp_path: Path):
    # verify checks that ExecStart's program exists: point it at this environment's command.
    exe = shutil.which("tillpoint") or str(Path(sys.executable).parent / "tillpoint")
    text = (ROOT / "systemd" / unit).read_text().replace("/usr/local/bin/tillpoint", exe)
    assert "Type=notify" in text or unit == "tillpoint-sim.service"
    (tmp_path / unit).write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)],
                         capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                if unit in ln or "Unknown" in ln or "Invalid" in ln]
    assert out.returncode == 0 and problems == [], out.stdout + out.stderr
