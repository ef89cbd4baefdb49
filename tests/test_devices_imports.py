"""agent.devices imports cleanly, alone, and never reaches into central or hardware_sim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    f"agent.devices.{p.stem}"
    for p in (ROOT / "agent" / "devices").glob("*.py")
    if p.stem != "__init__"
)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone_without_central_or_simulator(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('central', 'hardware_sim')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_codecs_are_pure() -> None:
    code = (
        "import sys\n"
        "import agent.devices.shtrih_frames, agent.devices.shtrih_commands\n"
        "import agent.devices.card_frames, agent.devices.shtrih_errors\n"
        "assert 'serial' not in sys.modules and 'asyncio' not in sys.modules, 'impure codec'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
