"""A step's result type reaches the pipeline body: ``x = yield from ctx.run(step, ...)``.

A bare ``yield`` expression is ``Any`` to a type checker, so before ``StepCall.__iter__``
a pipeline's locals were unchecked. These run the project's own mypy gate (its
configuration in pyproject.toml) on small pipelines and read what it reports: a wrong
use of a step's result must be an error, and the right one must pass.
"""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent

PIPELINE_HEADER = """\
from collections.abc import Generator
from typing import Any

from app.durable import Context


def greeting(name: str) -> str:
    return f"hello {name}"


async def count(name: str) -> int:
    return len(name)
"""

#: Uses each result as the step's type: mypy must accept it.
RIGHT = """
def pipeline(ctx: Context) -> Generator[Any, Any, int]:
    text: str = yield from ctx.run(greeting, "ada")
    length: int = yield from ctx.run(count, text)
    return length + len(text.upper())
"""

#: Uses each result as another type: mypy must reject every line marked ``wrong``.
WRONG = """
def pipeline(ctx: Context) -> Generator[Any, Any, int]:
    number: int = yield from ctx.run(greeting, "ada")  # wrong: str to int
    text = yield from ctx.run(greeting, "ada")
    text.no_such_method()  # wrong: str has no such attribute
    awaited = yield from ctx.run(count, "ada")
    return awaited.upper()  # wrong: an async step's result is its awaited int, not a coroutine
"""


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy's error lines for each pipeline file, from one run (a cold cache takes seconds)."""
    folder = tmp_path_factory.mktemp("pipeline_types")
    files = {}
    for name, body in {"right_pipeline": RIGHT, "wrong_pipeline": WRONG}.items():
        files[name] = folder / f"{name}.py"
        files[name].write_text(PIPELINE_HEADER + textwrap.dedent(body))
    with contextlib.chdir(ROOT):  # where mypy finds ``app``, as the gate does
        stdout, stderr, _status = api.run(
            [
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(folder / ".mypy_cache"),
                "--no-error-summary",
                *map(str, files.values()),
            ]
        )
    assert stderr == ""
    lines = stdout.splitlines()
    return {name: [line for line in lines if line.startswith(str(path))] for name, path in files.items()}


def test_a_step_result_used_as_its_own_type_passes_the_type_checker(reported: dict[str, list[str]]) -> None:
    assert reported["right_pipeline"] == []


def test_a_step_result_used_as_another_type_is_a_type_error(reported: dict[str, list[str]]) -> None:
    errors = reported["wrong_pipeline"]
    wrong_lines = [number for number, line in enumerate(WRONG.splitlines()) if "# wrong" in line]
    first = len(PIPELINE_HEADER.splitlines()) + 1  # the file's line that is WRONG's first
    assert sorted({int(error.split(":")[1]) - first for error in errors}) == wrong_lines, errors
    assert any('assignment (expression has type "str", variable has type "int")' in error for error in errors)
    assert any('"str" has no attribute "no_such_method"' in error for error in errors)
    assert any('"int" has no attribute "upper"' in error for error in errors)
