"""Databricks' jobs service on the HTTP double, for many runs at once.

The run watcher's tests and its benchmark (scripts/bench_watch.py) need a workspace
with hundreds or thousands of runs that wait, some of which end or get cancelled, and
a count of every call DARA makes to it. :class:`JobsService` serves, on a
:class:`~scripts.databricks_double.DatabricksDouble`:

* ``jobs/run-now``: one run per idempotency token, as Databricks does; its answer can
  be held (:meth:`JobsService.hold_run_now`) after the run started, as a slow network would;
* ``jobs/runs/get``: the run in the recorded shape (``recorded_run``), one task per
  task key of the job (``tasks``), each task run with its own id;
* ``jobs/runs/list``: newest first, ``active_only``, at most :data:`PAGE_SIZE` runs a
  page with ``next_page_token`` (a bigger ``limit`` is refused, as by the API); each
  run with the ``overriding_parameters`` it was started with, as ``runs/get`` shows it;
* ``jobs/runs/cancel``: the run ends ``CANCELED`` (at once: Databricks takes a moment);
* ``jobs/runs/get-output``: a task's ``notebook_output.result`` if it exited with a value.

The test plays the notebooks: :meth:`JobsService.end` ends a run without a callback.

Given a webhook (:meth:`JobsService.send_run_events`), it also plays Databricks' job
notifications to a generic webhook destination: when a run ends (by :meth:`end` or a
cancel) it POSTs ``{"event_type": "jobs.on_success" | "jobs.on_failure", "workspace_id",
"run": {"run_id"}, "job": {"job_id", "name"}}`` with HTTP Basic auth, from a thread of
its own, as Databricks sends them after the run ended.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from scripts.databricks_double import (
    WORKSPACE_ID,
    DatabricksDouble,
    RecordedRequest,
    Response,
    api_error,
    recorded_run,
)

RUN_NOW = "/api/2.2/jobs/run-now"
GET_RUN = "/api/2.2/jobs/runs/get"
LIST_RUNS = "/api/2.2/jobs/runs/list"
CANCEL_RUN = "/api/2.2/jobs/runs/cancel"
GET_OUTPUT = "/api/2.2/jobs/runs/get-output"
#: The most runs the Jobs API returns in one page of runs/list.
PAGE_SIZE = 25
JOB_ID = 4242
JOB_NAME = "dara-watch"
#: Results Databricks notifies ``on_success`` for ("succeeded with failures" counts as success).
_SUCCESSES = ("SUCCESS", "SUCCESS_WITH_FAILURES")
#: Run ids are spaced so that each task run of a run has an id of its own.
_RUN_STEP = 100


@dataclass
class SimulatedRun:
    run_id: int
    life_cycle_state: str = "RUNNING"
    result_state: str | None = None
    state_message: str = ""
    #: The notebook_params run-now was given (the callback widgets among them).
    params: dict[str, str] = field(default_factory=dict)
    #: task key -> what the task passed to dbutils.notebook.exit (absent: nothing).
    exit_values: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.life_cycle_state not in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")


class JobsService:
    """Run-now, runs/get, runs/list, runs/cancel and runs/get-output for the runs of one job."""

    def __init__(self, double: DatabricksDouble, *, tasks: tuple[str, ...] = ("notebook",)) -> None:
        self.double = double
        self.tasks = tasks
        self.runs: dict[int, SimulatedRun] = {}
        self._tokens: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Runs newest first, as listed: built once per change, not once per page.
        self._listing: tuple[int, bool, list[SimulatedRun]] | None = None
        self._changes = 0
        #: Where run events go: (url, user, password); None sends none.
        self._webhook: tuple[str, str, str] | None = None
        #: (run id, HTTP status) of each run event sent, in the order answered (0: no answer).
        self.deliveries: list[tuple[int, int]] = []
        #: Set while run-now answers at once; cleared, it answers once set again.
        self._answering = threading.Event()
        self._answering.set()
        double.route("POST", RUN_NOW, self._run_now)
        double.route("GET", GET_RUN, self._get_run)
        double.route("GET", LIST_RUNS, self._list_runs)
        double.route("POST", CANCEL_RUN, self._cancel)
        double.route("GET", GET_OUTPUT, self._get_output)

    # -- playing the notebooks ---------------------------------------------------------
    def end(
        self, run_id: int, result_state: str = "FAILED", *, message: str = "", exit_values: dict[str, str] | None = None
    ) -> None:
        """End ``run_id`` as its notebook would without calling back."""
        with self._lock:
            run = self.runs[run_id]
            run.life_cycle_state, run.result_state = "TERMINATED", result_state
            run.state_message = message or {"FAILED": "Workload failed"}.get(result_state, "")
            run.exit_values = dict(exit_values or {})
            self._changes += 1
        self._notify(run_id, result_state)

    def send_run_events(self, url: str, user: str, password: str) -> None:
        """From now on, POST a run event to ``url`` whenever a run ends."""
        self._webhook = (url, user, password)

    def hold_run_now(self) -> threading.Event:
        """From now on, run-now starts its run and holds its answer until the returned
        event is set: the run goes on while the caller has not heard of it."""
        self._answering.clear()
        return self._answering

    def active(self) -> list[int]:
        with self._lock:
            return [run.run_id for run in self.runs.values() if run.active]

    def calls(self, *paths: str) -> int:
        """Requests received (to ``paths``, or to any route but the SDK's host probe)."""
        return sum(1 for r in self.double.requests if not paths or r.path in paths)

    # -- routes --------------------------------------------------------------------------
    def _run_now(self, request: RecordedRequest) -> dict[str, Any]:
        body = request.json
        with self._lock:
            run_id = self._tokens.get(body.get("idempotency_token") or "")
            if run_id is None:
                run_id = _RUN_STEP * (len(self.runs) + 1)
                self.runs[run_id] = SimulatedRun(run_id, params=dict(body.get("notebook_params") or {}))
                self._changes += 1
                if body.get("idempotency_token"):
                    self._tokens[body["idempotency_token"]] = run_id
        # Bounded, so a test that never releases it fails instead of hanging.
        self._answering.wait(timeout=60)
        return {"run_id": run_id, "number_in_job": run_id}

    def _get_run(self, request: RecordedRequest) -> dict[str, Any] | Response:
        with self._lock:
            run = self.runs.get(int(request.query["run_id"][0]))
            if run is None:
                return api_error(400, "INVALID_PARAMETER_VALUE", f"Run {request.query['run_id'][0]} does not exist.")
            return self._body(run)

    def _list_runs(self, request: RecordedRequest) -> dict[str, Any] | Response:
        limit = int((request.query.get("limit") or [str(20)])[0])
        if not 0 <= limit <= PAGE_SIZE:
            return api_error(400, "INVALID_PARAMETER_VALUE", f"limit must be between 0 and {PAGE_SIZE}")
        limit = limit or PAGE_SIZE
        active_only = (request.query.get("active_only") or ["false"])[0].lower() == "true"
        token = (request.query.get("page_token") or [""])[0]
        start = int(token.removeprefix("page-")) if token.startswith("page-") else 0
        with self._lock:
            if self._listing is None or self._listing[:2] != (self._changes, active_only):
                listed = (run for run in self.runs.values() if run.active or not active_only)
                # newest first, as the API lists them
                self._listing = (self._changes, active_only, sorted(listed, key=lambda run: run.run_id, reverse=True))
            runs = self._listing[2]
            page = [self._listed(run) for run in runs[start : start + limit]]
        body: dict[str, Any] = {"has_more": start + limit < len(runs)}
        if page:
            body["runs"] = page
        if body["has_more"]:
            body["next_page_token"] = f"page-{start + limit}"
        if start:
            body["prev_page_token"] = f"page-{max(start - limit, 0)}"
        return body

    def _cancel(self, request: RecordedRequest) -> dict[str, Any] | Response:
        run_id = int(request.json["run_id"])
        with self._lock:
            run = self.runs.get(run_id)
            if run is None:
                return api_error(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
            ended = run.active
            if ended:
                run.life_cycle_state, run.result_state = "TERMINATED", "CANCELED"
                run.state_message = "Run cancelled."
                self._changes += 1
        if ended:
            self._notify(run_id, "CANCELED")
        return {}

    def _get_output(self, request: RecordedRequest) -> dict[str, Any] | Response:
        task_run_id = int(request.query["run_id"][0])
        with self._lock:
            run = self.runs.get(task_run_id - task_run_id % _RUN_STEP)
            position = task_run_id % _RUN_STEP - 1
            if run is None or not 0 <= position < len(self.tasks):
                return api_error(400, "INVALID_PARAMETER_VALUE", f"Run {task_run_id} does not exist.")
            metadata = self._listed(run) | {"run_id": task_run_id, "run_name": self.tasks[position]}
            body: dict[str, Any] = {"metadata": metadata}
            value = run.exit_values.get(self.tasks[position])
            if value is not None:
                body["notebook_output"] = {"result": value, "truncated": False}
            return body

    # -- job notifications ---------------------------------------------------------------
    def _notify(self, run_id: int, result_state: str) -> None:
        if self._webhook is None:
            return
        event = "jobs.on_success" if result_state in _SUCCESSES else "jobs.on_failure"
        body = {
            "event_type": event,
            "workspace_id": WORKSPACE_ID,
            "run": {"run_id": run_id},
            "job": {"job_id": JOB_ID, "name": JOB_NAME},
        }
        threading.Thread(target=self._post, args=(self._webhook, run_id, body), daemon=True).start()

    def _post(self, webhook: tuple[str, str, str], run_id: int, body: dict[str, Any]) -> None:
        url, user, password = webhook
        try:
            status = httpx.post(url, json=body, auth=(user, password), timeout=10).status_code
        except httpx.HTTPError:
            status = 0  # Databricks would retry; a lost event is what the backstop is for
        with self._lock:
            self.deliveries.append((run_id, status))

    # -- shapes --------------------------------------------------------------------------
    def _body(self, run: SimulatedRun) -> dict[str, Any]:
        body = recorded_run(
            host=self.double.url,
            job_id=JOB_ID,
            run_id=run.run_id,
            run_name="dara-watch",
            notebook_path="/Workspace/Shared/dara/watched",
            life_cycle_state=run.life_cycle_state,
            result_state=run.result_state,
            state_message=run.state_message,
        )
        body["tasks"] = [self._task(run, position, body["tasks"][0]) for position in range(len(self.tasks))]
        if run.params:  # what run-now was given, as the API shows it in runs/get and runs/list
            body["overriding_parameters"] = {"notebook_params": dict(run.params)}
        return body | {"run_type": "JOB_RUN", "trigger": "ONE_TIME"}

    def _task(self, run: SimulatedRun, position: int, template: dict[str, Any] | None = None) -> dict[str, Any]:
        template = template or self._body(run)["tasks"][0]
        task_run_id = run.run_id + 1 + position
        return template | {
            "run_id": task_run_id,
            "task_key": self.tasks[position],
            "run_page_url": f"{self.double.url}/#job/{JOB_ID}/run/{task_run_id}",
        }

    def _listed(self, run: SimulatedRun) -> dict[str, Any]:
        """A run as runs/list shows it without ``expand_tasks``: no tasks."""
        body = self._body(run)
        del body["tasks"]
        return body
