"""Scripts never import the tests: the tests may use what scripts/ holds, not the other way round.

A benchmark or tool that imports ``tests`` breaks when the tests are left out (the Docker
image and the App's bundle leave tests/ out) and ties a script to test-only code. The
doubles both need live in scripts/ (scripts/databricks_double.py). Imports are read from
each file's syntax tree, so a ``tests`` in a comment or a string does not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def imported_modules(source: str) -> list[str]:
    """The absolute module names a file's ``import`` and ``from ... import`` statements name."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def imports_tests(source: str) -> list[str]:
    return [name for name in imported_modules(source) if name == "tests" or name.startswith("tests.")]


def test_no_script_imports_the_tests() -> None:
    scripts = sorted(SCRIPTS.rglob("*.py"))
    assert SCRIPTS / "bench_watch.py" in scripts  # the check reads the files it means to
    offenders = {
        str(path.relative_to(SCRIPTS.parent)): found
        for path in scripts
        if (found := imports_tests(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, f"scripts must not import tests/; move what they need into scripts/: {offenders}"


def test_the_check_sees_every_form_of_import_but_not_mentions() -> None:
    assert imports_tests("import tests.harness") == ["tests.harness"]
    assert imports_tests("import json, tests") == ["tests"]
    assert imports_tests("from tests import harness") == ["tests"]
    assert imports_tests("def f():\n    from tests.postgres import postgres_dsn\n") == ["tests.postgres"]
    assert imports_tests("# from tests import harness\nDOC = 'tests/harness.py'\nimport testsuite") == []
    assert imports_tests("from . import databricks_double") == []
