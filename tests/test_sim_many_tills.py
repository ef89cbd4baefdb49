"""`--tills K`: devices for K tills from one simulator process, each fully separate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _wait_controls(dirs: list[Path], proc: subprocess.Popen, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if all((d / "control.json").exists() for d in dirs):
            return [json.loads((d / "control.json").read_text()) for d in dirs]
        assert time.monotonic() < deadline, "simulator did not start in time"
        time.sleep(0.05)


def test_each_till_gets_its_own_devices_and_control_port(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "hardware_sim", "--dir", str(tmp_path),
                             "--tills", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dirs = [tmp_path / f"till-{n}" for n in (1, 2, 3)]
    try:
        controls = _wait_controls(dirs, proc)
        assert len({c["port"] for c in controls}) == 3
        ttys = set()
        for d, c in zip(dirs, controls, strict=True):
            assert (d / "printer").is_symlink() and (d / "reader").is_symlink()
            ttys |= {str((d / "printer").resolve()), str((d / "reader").resolve())}
            with urllib.request.urlopen(f"http://127.0.0.1:{c['port']}/printer/state",
                                        timeout=10) as resp:
                assert json.loads(resp.read())["last_fiscal_document"] == 0
        assert len(ttys) == 6  # six distinct pseudo-terminals
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not any((d / "control.json").exists() or (d / "printer").exists() for d in dirs)


def test_a_nonsensical_till_count_is_refused(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "hardware_sim", "--dir", str(tmp_path),
                          "--tills", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--tills" in out.stderr
