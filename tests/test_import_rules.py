"""The architecture in one glance (ARCHITECTURE.md), checked on every module's imports."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "protocol": {"agent", "central", "hardware_sim", "tillpoint"},
    "agent": {"central", "hardware_sim", "tillpoint"},
    "central": {"agent", "hardware_sim", "tillpoint"},
    "hardware_sim": {"agent", "central", "protocol", "tillpoint"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_architecture_allows(package: str):
    broken = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) & FORBIDDEN[package]
        if bad:
            broken[str(path.relative_to(ROOT))] = sorted(bad)
    assert broken == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path):
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom central.ledger import earn\nimport agent.store as s\n")
    assert imported_packages(sample) == {"os", "central", "agent"}


@pytest.mark.parametrize("package", ["protocol", "agent", "central", "hardware_sim",
                                     "tillpoint"])
def test_every_module_imports_on_its_own(package: str):
    """No import cycles: each module imports in a fresh interpreter state of its own."""
    import subprocess
    import sys

    pkg = importlib.import_module(package)
    modules = [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")
               if not m.name.endswith(".__main__")]
    assert modules
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for name in modules:
        result = subprocess.run([sys.executable, "-c", code, name], capture_output=True,
                                text=True, cwd=ROOT)
        assert result.returncode == 0, f"{name}: {result.stderr[-500:]}"
