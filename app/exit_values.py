"""What a run's notebooks passed to ``dbutils.notebook.exit``: a second way to finish a wait.

A notebook that cannot reach DARA (no route back from the workspace, a firewall)
can still end with ``dbutils.notebook.exit(json.dumps(value))``. Databricks keeps that
string in each task's run output (``runs/get-output``: ``notebook_output.result``), so
the run watcher reads it once the run ended SUCCESS without calling back, and the wait
is resolved with it: the value itself for a one-task job, a dict by task key for a
job of several tasks (those that exited with a value).

An exit value is the notebook's to choose, so it is held to what a callback is held
to: at most ``DARA_MAX_VALUE_BYTES`` in all, JSON nested no deeper than
``DARA_MAX_JSON_DEPTH``, no unpaired surrogates. A value that is not JSON is kept as
the string it is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from app.limits import depth_message, surrogate_message, too_deep, unpaired_surrogate
from steps.retryable import is_transient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExitValues:
    """What the notebooks of one run exited with."""

    #: Whether any task exited with a value it can use (``value`` may be None: ``exit("null")``).
    found: bool = False
    value: Any = None
    #: Why the value cannot be used (too large, too deep, cut short by Databricks).
    problem: str | None = None


def read_exit_values(w: WorkspaceClient, run: jobs.Run, *, max_bytes: int, max_depth: int) -> ExitValues:
    """The exit values of ``run``'s tasks, checked as a callback's value would be.

    A task whose output cannot be read for good (no such output, a route the workspace
    lacks) counts as one without a value; a transient failure is raised, so that the
    watcher reads again on its next look instead of failing a run that succeeded.
    """
    tasks = [task for task in run.tasks or [] if task.run_id is not None]
    values: dict[str, Any] = {}
    size = 0
    for task in tasks:
        try:
            output = w.jobs.get_run_output(task.run_id)  # type: ignore[arg-type]
        except Exception as exc:
            if is_transient(exc):
                raise
            logger.debug("no output for task run %s: %s", task.run_id, exc)
            continue
        notebook = output.notebook_output
        if notebook is None or notebook.result is None:
            continue
        what = f"the exit value of task {task.task_key}"
        if notebook.truncated:
            return ExitValues(problem=f"{what} was cut short by Databricks (it keeps 5 MB); exit with less")
        size += len(notebook.result.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            return ExitValues(
                problem=f"{what} makes the run's exit values {size} bytes, over DARA_MAX_VALUE_BYTES "
                f"({max_bytes}); exit with less or raise the setting",
            )
        values[task.task_key] = _decoded(notebook.result, what, max_depth)
    problems = [value.problem for value in values.values() if isinstance(value, _Refused)]
    if problems:
        return ExitValues(problem=problems[0])
    if not values:
        return ExitValues()
    if len(tasks) == 1:
        return ExitValues(True, next(iter(values.values())))
    return ExitValues(True, values)


@dataclass(frozen=True)
class _Refused:
    problem: str


def _decoded(text: str, what: str, max_depth: int) -> Any:
    """``text`` parsed as JSON if it is JSON (``json.dumps`` is the usual way to exit), else itself."""
    if (surrogate := unpaired_surrogate(text)) is not None:
        return _Refused(surrogate_message(what, surrogate))
    depth = too_deep(text, max_depth)
    if depth is not None:
        return _Refused(depth_message(what, depth, max_depth))
    try:
        return json.loads(text)
    except ValueError:
        return text
