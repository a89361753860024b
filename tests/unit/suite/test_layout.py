"""The suite's own layout: tests import helpers from support modules (tests/support/,
tests/e2e/support.py, tests/e2e/tools.py), never from another test module or a conftest; and,
with no __init__.py in tests/ (pytest's default import mode imports a test module by its file
name), no two test modules share a name."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from tests.support.paths import ROOT

TESTS = ROOT / "tests"


def module_of(path: Path) -> str:
    """The dotted name of a file under the repository: tests/unit/engine/test_fields.py is
    tests.unit.engine.test_fields."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported(tree: ast.Module, module: str) -> list[tuple[int, list[str]]]:
    """(line, dotted names) of each import statement in ``tree``, at any depth: the module of a
    ``from`` import first, then each name taken from it (a name may be a module); relative
    imports resolved against ``module``."""
    found: list[tuple[int, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.append((node.lineno, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level]
                base = ".".join([*package, *([base] if base else [])])
            found.append((node.lineno, [base, *(f"{base}.{a.name}" for a in node.names if a.name != "*")]))
    return found


def is_test_or_conftest(name: str) -> bool:
    """A test module or a conftest: named test_* or conftest, under tests/ or bare (pytest's
    default import mode puts a test's folder on sys.path, so ``import test_fields`` would work)."""
    parts = name.split(".")
    if len(parts) > 1 and parts[0] != "tests":
        return False
    return any(part.startswith("test_") or part == "conftest" for part in parts)


def offending_imports(source: str, path: Path) -> list[str]:
    """Where ``source`` (the file at ``path``) imports a test module or a conftest."""
    module = module_of(path)
    found: list[str] = []
    for line, names in imported(ast.parse(source, str(path)), module):
        bad = [name for name in names if is_test_or_conftest(name)]
        if bad:
            found.append(f"{path.relative_to(ROOT)}:{line}: imports {bad[0]}")
    return found


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 50, "the whole suite is read"
    found = [hit for path in files for hit in offending_imports(path.read_text(encoding="utf-8"), path)]
    assert found == [], "move what they share to a support module (tests/support/, tests/e2e/support.py)"


def test_the_check_catches_a_test_module_or_a_conftest_imported() -> None:
    here = TESTS / "unit" / "engine" / "test_example.py"
    caught = [
        "from tests.unit.engine.test_evaluate import applied",
        "from tests.unit.engine import test_evaluate",
        "import tests.e2e.test_profiles",
        "from tests.conftest import ROOT",
        "from tests.e2e.conftest import wait_for",
        "from .test_evaluate import applied",
        "from . import conftest",
        "import test_fields",
        "def helper() -> None:\n    from tests.unit.control.test_reconcile import deployment\n",
    ]
    for source in caught:
        assert offending_imports(source, here), source
    passed = [
        "from tests.support.apiserver import server_side_apply",
        "from tests.e2e.support import wait_for",
        "from tests.e2e.tools import Helm",
        "import pytest",
        "from readiness.engine import evaluate",
        "from hypothesis import strategies as st",
    ]
    for source in passed:
        assert offending_imports(source, here) == [], source


def test_no_two_test_modules_share_a_name() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]
