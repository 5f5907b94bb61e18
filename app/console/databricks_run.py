"""A Databricks run as DARA's page shows it: its state and each task's state, output
and error, read with the SDK (``jobs.get_run``, ``jobs.get_run_output``).

This is the page run links lead to on the embedded workspace, which has no UI of its
own; on a real workspace it sits beside the link to the workspace's page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service import jobs

from app.console.layout import badge
from steps.jobs import run_state

#: Longest notebook output or error trace shown; the rest is in the workspace.
MAX_TEXT = 20_000


@dataclass
class TaskOutcome:
    key: str
    run_id: int | None
    state: str
    message: str
    output: str | None = None
    error: str | None = None
    trace: str | None = None


@dataclass
class RunDetails:
    run_id: int
    job_id: int | None
    name: str
    state: str
    message: str
    started: datetime | None
    ended: datetime | None
    tasks: list[TaskOutcome] = field(default_factory=list)


def describe_run(w: WorkspaceClient, run_id: int) -> RunDetails | None:
    """The run and each task's outcome; None if the workspace has no such run."""
    try:
        run = w.jobs.get_run(run_id)
    except NotFound:
        return None
    tasks = [_task(w, task) for task in run.tasks or []]
    return RunDetails(
        run_id=run_id,
        job_id=run.job_id,
        name=run.run_name or "",
        state=run_state(run.state),
        message=(run.state.state_message if run.state else None) or "",
        started=_time(run.start_time),
        ended=_time(run.end_time),
        tasks=tasks,
    )


def _task(w: WorkspaceClient, task: jobs.RunTask) -> TaskOutcome:
    outcome = TaskOutcome(
        key=task.task_key or "",
        run_id=task.run_id,
        state=run_state(task.state),
        message=(task.state.state_message if task.state else None) or "",
    )
    if task.run_id is None:
        return outcome
    try:
        output = w.jobs.get_run_output(task.run_id)
    except DatabricksError as exc:  # e.g. not available until the task has finished
        outcome.output = f"(no output yet: {exc})"
        return outcome
    notebook = output.notebook_output.result if output.notebook_output else None
    outcome.output = _cut(notebook or output.logs)
    outcome.error = _cut(output.error)
    outcome.trace = _cut(output.error_trace)
    return outcome


#: Life-cycle states after which a run changes no more.
FINAL_STATES = frozenset(
    {
        "SUCCESS",
        "FAILED",
        "TIMEDOUT",
        "CANCELED",
        "CANCELLED",
        "SKIPPED",
        "INTERNAL_ERROR",
        "TERMINATED",
        "EXCLUDED",
        "SUCCESS_WITH_FAILURES",
        "UPSTREAM_FAILED",
        "UPSTREAM_CANCELED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "DISABLED",
    }
)


def is_final(details: RunDetails) -> bool:
    return details.state in FINAL_STATES


def version(details: RunDetails) -> str:
    """Changes whenever the run's or a task's state does."""
    parts = [details.state, *(f"{task.key}={task.state}" for task in details.tasks)]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def render(details: RunDetails) -> str:
    job = f"of job {details.job_id} · " if details.job_id is not None else ""
    when = " · ".join(
        part
        for part in (
            f"started {details.started:%Y-%m-%d %H:%M:%S} UTC" if details.started else "",
            f"ended {details.ended:%H:%M:%S}" if details.ended else "",
        )
        if part
    )
    rows = "".join(
        f"<tr><td><b>{escape(task.key)}</b><br><code>{task.run_id or ''}</code></td>"
        f"<td>{badge(task.state.lower(), task.state)}</td><td>{escape(task.message)}</td>"
        f"<td>{_text(task.output)}</td><td>{_error(task)}</td></tr>"
        for task in details.tasks
    )
    return (
        f"<h1>Databricks run {details.run_id} {badge(details.state.lower(), details.state)}</h1>"
        f"<p>{escape(details.name)} · {job}{when}</p>"
        f"<p>{escape(details.message)}</p>"
        "<h2>Tasks</h2><table><tr><th>task</th><th>state</th><th>message</th><th>output</th><th>error</th></tr>"
        f"{rows or '<tr><td colspan=5>No tasks.</td></tr>'}</table>"
    )


def _error(task: TaskOutcome) -> str:
    # A task that succeeded may still report its notebook's stderr as ``error``: noise.
    if task.state == "SUCCESS" or (not task.error and not task.trace):
        return ""
    return f'<span class="error">{escape(task.error or "")}</span>{_text(task.trace)}'


def _text(value: str | None) -> str:
    return f"<pre>{escape(value)}</pre>" if value else ""


def _cut(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_TEXT:
        return value
    return value[:MAX_TEXT] + " ..."


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None
