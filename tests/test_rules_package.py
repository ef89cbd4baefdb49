"""The rules package as a whole: pure, integer-only, importable alone, indexed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from bench.rules import customer, receipt, ruleset_doc
from protocol.rules import compile_ruleset, price
from protocol.rules.context import make_context
from tests.test_rules_support import NOON

PKG = Path(__file__).resolve().parent.parent / "protocol" / "rules"
MODULES = sorted(p for p in PKG.glob("*.py"))


def _trees():
    for path in MODULES:
        yield path, ast.parse(path.read_text(), str(path))


def test_every_module_imports_on_its_own():
    # a fresh interpreter per module: an import cycle shows up as an ImportError
    names = [f"protocol.rules.{p.stem}" for p in MODULES if p.stem != "__init__"]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    for name in names:
        subprocess.run([sys.executable, "-c", code, name], check=True, cwd=PKG.parent.parent)


def test_protocol_rules_imports_nothing_of_the_rest_of_the_project():
    forbidden = ("agent", "central", "hardware_sim", "tillpoint", "bench")
    for path, tree in _trees():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in forbidden, f"{path.name} imports {n}"


def test_no_floats_no_clock_no_io():
    for path, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant):
                assert not isinstance(node.value, float), f"float literal in {path.name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in {"now", "utcnow", "today", "time", "open"}, (
                    f"{path.name} calls .{node.func.attr}()")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "float", "print"}, (
                    f"{path.name} calls {node.func.id}()")
            if isinstance(node, ast.BinOp):
                assert not isinstance(node.op, ast.Div), f"true division in {path.name}"


def test_index_keeps_pricing_away_from_most_campaigns():
    rs = compile_ruleset(ruleset_doc(2000))
    ctx = make_context(rs, receipt(), customer(2000), NOON)
    views = ((v.index, v.line.sku, v.prefixes, v.line.brand) for v in ctx.lines)
    found = rs.index.candidates(views, ctx.customer.activated_offers, ctx.customer.segments,
                                ctx.receipt.store)
    assert len(found) < 100  # of 2,000
    p = price(rs, receipt(), customer(2000), NOON)
    assert p.explanation.applied
