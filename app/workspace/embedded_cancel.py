"""``jobs/runs/cancel`` for the embedded workspace, which brickhouse 0.1.0 lacks.

Without it, cancelling a DARA run left its notebook running -- and holding one of
brickhouse's two run slots -- until it finished by itself. brickhouse already knows how
to stop a run: each running one has a cancel event, which it sets for every run on
shutdown. Setting it makes brickhouse terminate the notebook worker's process group
(the worker shuts its kernel down on SIGTERM), record the task CANCELED and the run
TERMINATED/CANCELED, and start the next queued run in the freed slot. This route sets
that event for one run.

A run still waiting in brickhouse's queue has no process to stop, and brickhouse's
records let a task end CANCELED only from running. So such a run is ended the way
brickhouse ends a run it could not start -- its tasks skipped, the run interrupted --
with the code :data:`CANCELLED_WHILE_QUEUED`, which brickhouse never uses, and
``runs/get`` shows that run and its tasks TERMINATED/CANCELED.

As on Databricks the cancel is asynchronous (the run reads CANCELED a moment later),
cancelling a run that already ended does nothing, and an unknown run is a 404
``RESOURCE_DOES_NOT_EXIST``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from brickhouse.api.catalog import ApiResponse
from brickhouse.jobs.models import JobRunState, JobTaskState
from brickhouse.jobs.repository import JobRunNotFoundError

#: The Jobs API versions the route answers on (the SDK DARA uses calls 2.2).
CANCEL_PATHS = frozenset({"/api/2.1/jobs/runs/cancel", "/api/2.2/jobs/runs/cancel"})
RUNS_GET = "/api/2.2/jobs/runs/get"
#: What runs/get says of a run cancelled here (brickhouse's own says "during local shutdown").
CANCELLED_MESSAGE = "Run was cancelled through jobs/runs/cancel."
#: The error code of a run (and its tasks) cancelled before it left brickhouse's queue.
CANCELLED_WHILE_QUEUED = "CANCELLED_WHILE_QUEUED"
_MAX_RUN_ID = 2**63 - 1  # SQLite's integers: a larger id is no run, not a server error


def serve_cancel(jobs_api: Any) -> None:
    """Answer ``POST jobs/runs/cancel`` on brickhouse's Jobs API (``JobsHttpApi``)."""
    dispatch = jobs_api.dispatch
    execution, repository = jobs_api._execution, jobs_api._repository
    cancelled: set[int] = set()  # for runs/get's message; after a restart brickhouse's shows

    def cancel(body: dict[str, object] | None) -> ApiResponse:
        run_id = (body or {}).get("run_id")
        if type(run_id) is not int or not 0 < run_id <= _MAX_RUN_ID:
            return _error(HTTPStatus.BAD_REQUEST, "INVALID_PARAMETER_VALUE", "run_id must be a positive integer")
        # brickhouse's lock: while it is held no queued run can be dispatched and no
        # running one can finish, so the state read here is the state acted on.
        with execution._lock:
            try:
                run = repository.get_run(run_id)
            except JobRunNotFoundError:
                return _error(HTTPStatus.NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")
            if run.state not in (JobRunState.QUEUED, JobRunState.RUNNING):
                return ApiResponse(HTTPStatus.OK, {})  # already ended: nothing to cancel
            active = execution._active.get(run_id)
            if active is not None:
                active[2].set()  # its cancel event: brickhouse stops the worker and records it
                cancelled.add(run_id)
            elif run.state is JobRunState.QUEUED and run.dispatched_at is None:
                _cancel_queued(repository, run_id)
            # Otherwise brickhouse holds a run no thread owns (left by a crash); its own
            # runs/get reconciles that one.
        return ApiResponse(HTTPStatus.OK, {})

    def dispatch_with_cancel(method: str, target: str, body: dict[str, object] | None = None) -> ApiResponse | None:
        path = urlsplit(target).path
        if path in CANCEL_PATHS:
            if method != "POST":
                return _error(HTTPStatus.METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "use POST")
            return cancel(body)
        response = dispatch(method, target, body)
        if method == "GET" and path == RUNS_GET and response is not None and response.status == 200:
            _show_cancelled(response.payload, cancelled)
        return response

    jobs_api.dispatch = dispatch_with_cancel


def _cancel_queued(repository: Any, run_id: int) -> None:
    """End a run that never left the queue, as brickhouse ends one it could not start."""
    for task in repository.list_task_runs(run_id):
        if task.state is JobTaskState.PENDING:
            repository.mark_task_skipped(run_id, task.task_key, error_code=CANCELLED_WHILE_QUEUED)
    repository.interrupt_run(run_id, error_code=CANCELLED_WHILE_QUEUED)


def _show_cancelled(run: dict[str, Any], cancelled: set[int]) -> None:
    """Say in a runs/get answer that a run cancelled here was cancelled, and how."""
    state = run.get("state") or {}
    if state.get("life_cycle_state") == "INTERNAL_ERROR" and state.get("state_message") == CANCELLED_WHILE_QUEUED:
        run["state"] = {
            "life_cycle_state": "TERMINATED",
            "result_state": "CANCELED",
            "state_message": CANCELLED_MESSAGE,
        }
        for task in run.get("tasks") or []:
            task["state"] = {"life_cycle_state": "TERMINATED", "result_state": "CANCELED", "state_message": "cancelled"}
    elif run.get("run_id") in cancelled and state.get("result_state") == "CANCELED":
        state["state_message"] = CANCELLED_MESSAGE


def _error(status: HTTPStatus, code: str, message: str) -> ApiResponse:
    return ApiResponse(status, {"error_code": code, "message": message})
