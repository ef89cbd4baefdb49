"""The movable clock of whole-process tests (TILLPOINT_CLOCK_OFFSET_FILE): the agent and the
central read the same offset, and a file that holds no number is refused naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clock_in_a_process(module: str, offset_file: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", f"import {module} as c; print(c.utcnow().isoformat())"],
        env={**os.environ, "TILLPOINT_CLOCK_OFFSET_FILE": offset_file},
        capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("module", ["agent.clock", "central.clock"])
def test_both_ends_move_by_the_offset_and_refuse_garbage(tmp_path, module):
    offset = tmp_path / "offset"
    offset.write_text(str(15 * 86400))
    out = clock_in_a_process(module, str(offset))
    moved = datetime.fromisoformat(out.stdout.strip()) - datetime.now(UTC)
    assert timedelta(days=15) - timedelta(minutes=1) < moved < timedelta(days=15, minutes=1)
    offset.write_text("next tuesday")
    out = clock_in_a_process(module, str(offset))
    assert out.returncode != 0 and "TILLPOINT_CLOCK_OFFSET_FILE" in out.stderr
    # No file yet: the system clock.
    out = clock_in_a_process(module, str(tmp_path / "absent"))
    assert abs(datetime.fromisoformat(out.stdout.strip()) - datetime.now(UTC)) < \
        timedelta(minutes=1)
