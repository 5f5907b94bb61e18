"""What the failed tasks of a Databricks run raised, short enough for a run's error.

A run's state says only that a task failed ("WORKER_EXIT_NONZERO"); the notebook's
exception is in ``runs/get-output`` of the task's run: ``error`` ("ValueError: bad
input 42") and ``error_trace`` (its traceback, with ANSI colours). The run watcher puts
both, shortened, into the error of a run whose job failed, so users see why without
opening the workspace.

Notebook output is the notebook's to choose, so it is treated as hostile: escape
sequences and control characters are removed and every part is bounded, whatever the
notebook printed or raised.
"""

from __future__ import annotations

import logging
import re

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

logger = logging.getLogger(__name__)

#: Bounds on what one run's failures add to its error.
MAX_TASKS, TRACE_LINES, ERROR_CHARS, LINE_CHARS = 5, 5, 300, 160
#: ANSI escape sequences: CSI ``ESC [ ... letter``, OSC ``ESC ] ... BEL/ST``, ``ESC ( B``
#: and the like, and two-byte ones. What is left of any other is dropped as a control.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]+[0-~]|\x1b[0-~]")
#: Traceback rules such as IPython's "------...".
_RULE = re.compile(r"^[-=_~^*\s]+$")


def failed_task_errors(w: WorkspaceClient, run: jobs.Run) -> dict[str, str]:
    """task key -> its exception, for the run's first few FAILED tasks that have one.

    Best effort: the run failed either way, so an output that cannot be read (an API
    error, an expired output) leaves that task's entry out instead of raising.
    """
    failed = [
        task
        for task in run.tasks or []
        if task.task_key and task.run_id and task.state and task.state.result_state == jobs.RunResultState.FAILED
    ]
    errors = {}
    for task in failed[:MAX_TASKS]:
        try:
            output = w.jobs.get_run_output(task.run_id)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 -- see the docstring
            logger.debug("no output for task run %s: %s", task.run_id, exc)
            continue
        described = describe_error(output.error, output.error_trace)
        if described:
            errors[task.task_key] = described  # type: ignore[index]
    return errors


def describe_error(error: str | None, error_trace: str | None) -> str:
    """``ValueError: bad input 42 [trace: ... | ...]``: one bounded line, or "" for none."""
    message = _shorten(_one_line(error or ""), ERROR_CHARS)
    trace = [_one_line(line) for line in _clean(error_trace or "").splitlines()]
    trace = [line for line in trace if line and not _RULE.match(line)]
    if trace and trace[-1] == message:
        trace.pop()  # the trace ends with the message itself
    shown = " | ".join(_shorten(line, LINE_CHARS) for line in trace[-TRACE_LINES:])
    if not shown:
        return message
    return f"{message} [trace: {shown}]" if message else f"[trace: {shown}]"


def _clean(text: str) -> str:
    """Without escape sequences or control characters other than line breaks."""
    text = _ANSI.sub("", text)
    return "".join(ch if ch.isprintable() or ch == "\n" else " " for ch in text)


def _one_line(text: str) -> str:
    return " ".join(_clean(text).split())


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
