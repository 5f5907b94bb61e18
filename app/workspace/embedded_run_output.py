"""``jobs/runs/get-output`` for the embedded workspace as Databricks serves it.

brickhouse 0.1.0 falls short of it in two ways that hide a failed notebook's exception:

* Its ``error`` is the notebook worker's stderr: "notebook execution failed
  (CellExecutionError)" and kernel warnings. The exception is lost with the executed
  notebook. The embedded workspace therefore runs its notebooks with
  app/workspace/embedded_notebook_worker.py, which appends the exception to stderr;
  this module parses it back into ``error`` ("ValueError: bad input 42") and
  ``error_trace`` (the traceback, ANSI colours and all, as Databricks sends it).
* Every task of a run carries the run's own id, and get-output refuses a run with
  several tasks, so no task of a multi-task run has output to ask for. On Databricks
  each task run has its own id. Here a task's id is derived from its run's id and its
  position (:func:`task_run_id`), far above any id brickhouse hands out, so nothing is
  stored and the ids survive a restart. ``runs/get`` shows them; get-output accepts them.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import brickhouse.jobs.service
from brickhouse.api.catalog import ApiResponse
from brickhouse.jobs.models import MAX_TASKS_PER_JOB

from app.workspace.embedded_notebook_worker import MARKER

WORKER = Path(__file__).with_name("embedded_notebook_worker.py")
RUNS_GET, RUNS_GET_OUTPUT = "/api/2.2/jobs/runs/get", "/api/2.2/jobs/runs/get-output"
#: Task run ids are ``TASK_RUN_BASE + run_id * TASK_SLOTS + position``.
TASK_RUN_BASE, TASK_SLOTS = 10**15, 100
_MAX_RUN_ID = 2**63 - 1
_ACTIVE = {"PENDING", "QUEUED", "BLOCKED", "RUNNING", "TERMINATING", "WAITING_FOR_RETRY"}
assert MAX_TASKS_PER_JOB <= TASK_SLOTS


def use_exception_reporting_worker() -> None:
    """Run notebook tasks with the worker that reports the notebook's exception.

    brickhouse asks this module-level function for its worker script on every task, so
    replacing it is the one hook there is; the DARA worker runs brickhouse's unchanged.
    """
    brickhouse.jobs.service._notebook_worker_entry = lambda: WORKER


def task_run_id(run_id: int, position: int) -> int:
    return TASK_RUN_BASE + run_id * TASK_SLOTS + position


def split_task_run_id(run_id: int) -> tuple[int, int | None]:
    """(the run's id, the task's position), or (run_id, None) for the id of a run."""
    if run_id < TASK_RUN_BASE:
        return run_id, None
    return divmod(run_id - TASK_RUN_BASE, TASK_SLOTS)


def parse_exception(stderr: str) -> tuple[str, dict[str, Any] | None]:
    """Split the worker's stderr into (the rest, the notebook's exception or None).

    The block is the last one in stderr (the worker writes it last); its line counts
    are checked against what follows, so a truncated or garbled block is ignored.
    """
    start = stderr.rfind(f"\n{MARKER} ")
    if start < 0:
        return stderr, None
    header, *lines = stderr[start + 1 :].split("\n")
    try:
        _, values, traces, name = header.split(" ", 3)
        n_values, n_traces = int(values), int(traces)
    except ValueError:
        return stderr, None
    if not (0 <= n_values and 0 <= n_traces and n_values + n_traces <= len(lines)):
        return stderr, None
    return stderr[:start], {
        "type": name,
        "message": "\n".join(lines[:n_values]),
        "trace": lines[n_values : n_values + n_traces],
    }


def serve_run_output(jobs_api: Any) -> None:
    """Answer runs/get with task run ids and runs/get-output per task, with the exception."""
    dispatch = jobs_api.dispatch
    repository = jobs_api._repository

    def get_run(target: str) -> ApiResponse | None:
        response = dispatch("GET", target)
        if response is not None and response.status == 200:
            tasks = response.payload.get("tasks") or []
            if len(tasks) > 1:
                for position, task in enumerate(tasks):
                    task["run_id"] = task_run_id(response.payload["run_id"], position)
        return response

    def get_output(target: str) -> ApiResponse | None:
        values = parse_qs(urlsplit(target).query, keep_blank_values=True)
        try:
            [requested] = values.pop("run_id")
            asked = int(requested)
        except (KeyError, ValueError):
            return dispatch("GET", target)  # brickhouse says what is wrong with the request
        if values or not 0 < asked <= _MAX_RUN_ID:
            return dispatch("GET", target)
        run_id, position = split_task_run_id(asked)
        found = get_run(f"{RUNS_GET}?run_id={run_id}") if run_id > 0 else None
        if found is None or found.status == 404:
            return _error(HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"Run {asked} does not exist.")
        if found.status != 200:
            return found
        run = dict(found.payload)
        tasks = run.pop("tasks", None) or []
        if position is None and len(tasks) != 1:
            return _error(
                HTTPStatus.BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                f"run {asked} has {len(tasks)} tasks; ask for the output of each task run "
                "(the run_id of each of runs/get's tasks) instead",
            )
        if position is not None and position >= len(tasks):
            return _error(HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"Run {asked} does not exist.")
        task = tasks[position or 0]
        if task["state"].get("life_cycle_state") in _ACTIVE:
            return _error(
                HTTPStatus.CONFLICT, "INVALID_STATE", "run output is available after the local worker has finished"
            )
        metadata = run if position is None else run | task
        return ApiResponse(HTTPStatus.OK, _output(metadata, _latest_output(repository, run_id, task["task_key"])))

    def dispatch_with_output(method: str, target: str, body: dict[str, object] | None = None) -> ApiResponse | None:
        path = urlsplit(target).path
        if method == "GET" and path == RUNS_GET:
            return get_run(target)
        if method == "GET" and path == RUNS_GET_OUTPUT:
            return get_output(target)
        return dispatch(method, target, body)

    jobs_api.dispatch = dispatch_with_output


def _latest_output(repository: Any, run_id: int, task_key: str) -> Any:
    for attempt in reversed(repository.list_attempts(run_id, task_key)):
        output = repository.get_attempt_output(run_id, task_key, attempt.attempt_number)
        if output is not None:
            return output
    return None


def _output(metadata: dict[str, Any], output: Any) -> dict[str, Any]:
    """brickhouse's output payload, with the notebook's exception as Databricks gives it."""
    payload: dict[str, Any] = {"metadata": metadata, "logs": "", "logs_truncated": False, "logs_expired": False}
    if output is None:
        return payload
    payload["logs"] = output.stdout
    payload["logs_truncated"] = output.stdout_truncated or output.stderr_truncated
    payload["logs_expired"] = output.expired_at is not None
    stderr, exception = parse_exception(output.stderr)
    if exception is not None:
        payload["error"] = f"{exception['type']}: {exception['message']}"
        payload["error_trace"] = "\n".join(exception["trace"])
    elif stderr:
        payload["error"] = stderr
    return payload


def _error(status: HTTPStatus, code: str, message: str) -> ApiResponse:
    return ApiResponse(status, {"error_code": code, "message": message})
