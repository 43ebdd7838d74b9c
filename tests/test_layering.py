"""The package's layers, read from every import statement (function-level ones too) and checked at import time.

    base (errors.py, kinds.py: modules at the root) <- storage <- core <- domains, testing <- cli, ui, api
A lower layer never imports a higher one; nothing shipped imports tests/ or bench/ (neither is installed);
tests/ reaches bench/ only to test a bench script, through pytest.importorskip (docs/architecture.md).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The bottom layer: modules at the package root that every layer shares (the exceptions, the event words).
BASE = sorted(p.stem for p in ROOT.glob("*.py") if p.stem not in ("__init__", "__main__", "api"))
# What each part of the package may import from ledgerlab (itself always).
ALLOWED = {
    "base": set(),
    "storage": {"base"},
    "core": {"base", "storage"},
    "domains": {"base", "core"},
    "testing": {"base", "core", "storage"},
}
SHIPPED = ("base", "storage", "core", "domains", "testing", "cli", "ui", "api.py", "__init__.py", "__main__.py")
BENCH_SCRIPT_TESTS = {"test_judge_sim.py", "test_swarm_bench.py"}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (an import inside a function counts too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(part: str) -> list[Path]:
    if part == "base":
        return [ROOT / f"{name}.py" for name in BASE]
    where = ROOT / part
    return [where] if where.is_file() else sorted(p for p in where.rglob("*.py") if "template" not in p.parts)


def layer(module: str) -> str | None:
    """The package part a module belongs to (`ledgerlab.core.judge` -> core), None outside ledgerlab."""
    parts = module.split(".")
    if parts[0] in ("tests", "bench"):
        return parts[0]
    if parts[0] != "ledgerlab" or len(parts) == 1:
        return None
    return "base" if parts[1] in BASE else parts[1]


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(part: str) -> None:
    wrong = sorted(f"{path.relative_to(ROOT)} imports {module}" for path in files(part) for module in imports(path)
                   if layer(module) not in (None, part, *ALLOWED[part]))
    assert not wrong, "\n".join(wrong)


def test_nothing_shipped_imports_tests_or_bench() -> None:
    wrong = sorted(f"{path.relative_to(ROOT)} imports {module}" for part in SHIPPED for path in files(part)
                   for module in imports(path) if layer(module) in ("tests", "bench"))
    assert not wrong, "\n".join(wrong)


def test_bench_does_not_import_tests() -> None:
    wrong = sorted(f"{path.relative_to(ROOT)} imports {module}" for path in files("bench")
                   for module in imports(path) if layer(module) == "tests")
    assert not wrong, "\n".join(wrong)


def test_tests_reach_bench_only_to_test_a_bench_script() -> None:
    users = {path.name for path in files("tests")
             if "ledgerlab.bench" in path.read_text(encoding="utf-8") and path.name != Path(__file__).name}
    assert users <= BENCH_SCRIPT_TESTS, f"only the bench-script tests may use bench/: {sorted(users)}"
    for name in users:
        assert not any(layer(m) == "bench" for m in imports(ROOT / "tests" / name)), \
            f"tests/{name}: reach bench/ through pytest.importorskip (it is not installed)"


def test_ledger_and_views_do_not_import_each_other() -> None:
    # Both read the DDL from storage/schema.py; views is the lower of the two.
    assert "ledgerlab.storage.ledger" not in imports(ROOT / "storage" / "views.py")


def test_importing_storage_loads_no_core() -> None:
    modules = [f"ledgerlab.storage.{p.stem}" for p in files("storage") if p.stem != "__init__"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('ledgerlab.core', 'ledgerlab.domains'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout


def test_domain_hooks_are_read_only_through_domain_base() -> None:
    # core/domain_base.py's as_domain is the one place a missing optional hook falls back to its default.
    from ledgerlab.core.domain_base import HOOKS

    pattern = re.compile(rf"(getattr|hasattr)\([^)]*[\"']({'|'.join(HOOKS)})[\"']")
    wrong = sorted(f"{path.relative_to(ROOT)}: {m.group(0)}" for part in SHIPPED for path in files(part)
                   if path.name != "domain_base.py" for m in pattern.finditer(path.read_text(encoding="utf-8")))
    assert not wrong, "call the hook through as_domain(domain):\n" + "\n".join(wrong)
