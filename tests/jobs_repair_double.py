"""Databricks' ``jobs/runs/repair`` on the jobs service double (scripts/jobs_service_double.py).

:class:`RepairableJobs` adds to :class:`~scripts.jobs_service_double.JobsService` what a
repair needs, as the Jobs API behaves:

* ``POST /api/2.1|2.2/jobs/runs/repair``: a run that ended FAILED or TIMEDOUT runs again
  (``RUNNING``, with the parameters it was started with) and its ``repair_history`` gains
  an item; ``latest_repair_id`` must name the last repair (absent before the first), else
  400 ``INVALID_PARAMETER_VALUE``; a run still running or that did not fail is refused
  with 400 ``INVALID_STATE``. ``rerun_all_failed_tasks`` or ``rerun_tasks`` is required.
* ``runs/get`` with ``include_history=true`` shows ``repair_history``, and every run that
  ended shows when it did (``end_time``, real epoch ms): DARA dates its repair window by it.
"""

from __future__ import annotations

import time
from typing import Any

from scripts.databricks_double import DatabricksDouble, RecordedRequest, Response, api_error
from scripts.jobs_service_double import GET_RUN, JobsService, SimulatedRun

REPAIR_PATHS = ("/api/2.1/jobs/runs/repair", "/api/2.2/jobs/runs/repair")
_FIRST_REPAIR_ID = 7000


class RepairableJobs(JobsService):
    def __init__(self, double: DatabricksDouble, *, tasks: tuple[str, ...] = ("notebook",)) -> None:
        super().__init__(double, tasks=tasks)
        #: run id -> the ids of its repairs, in order.
        self.repairs: dict[int, list[int]] = {}
        #: run id -> when it last ended (epoch ms).
        self.ended_at: dict[int, int] = {}
        self._next_repair = _FIRST_REPAIR_ID
        double.route("GET", GET_RUN, self._get_run_with_history)
        for path in REPAIR_PATHS:
            double.route("POST", path, self._repair)

    def end(self, run_id: int, result_state: str = "FAILED", **kwargs: Any) -> None:
        super().end(run_id, result_state, **kwargs)
        self.ended_at[run_id] = int(time.time() * 1000)

    def _get_run_with_history(self, request: RecordedRequest) -> dict[str, Any] | Response:
        body = self._get_run(request)
        if isinstance(body, Response):
            return body
        ended = self.ended_at.get(body["run_id"])
        if ended is not None and body["end_time"]:
            body["end_time"] = ended
            body["run_duration"] = ended - body["start_time"]
        if (request.query.get("include_history") or ["false"])[0].lower() == "true":
            history = [{"type": "ORIGINAL", "start_time": body["start_time"]}]
            history += [{"type": "REPAIR", "id": repair_id} for repair_id in self.repairs.get(body["run_id"], [])]
            body["repair_history"] = history
        return body

    def _repair(self, request: RecordedRequest) -> dict[str, Any] | Response:
        body = request.json or {}
        run_id = int(body["run_id"])
        with self._lock:
            run: SimulatedRun | None = self.runs.get(run_id)
            if run is None:
                return api_error(400, "INVALID_PARAMETER_VALUE", f"Run {run_id} does not exist.")
            if not (body.get("rerun_all_failed_tasks") or body.get("rerun_tasks")):
                return api_error(
                    400, "INVALID_PARAMETER_VALUE", "Either rerun_tasks or rerun_all_failed_tasks must be set."
                )
            if run.active or run.result_state not in ("FAILED", "TIMEDOUT"):
                state = run.result_state or run.life_cycle_state
                return api_error(400, "INVALID_STATE", f"Run {run_id} is {state} and cannot be repaired.")
            repairs = self.repairs.setdefault(run_id, [])
            latest = repairs[-1] if repairs else None
            if body.get("latest_repair_id") != latest:
                return api_error(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    f"The latest repair ID for run {run_id} is {latest}, not {body.get('latest_repair_id')}.",
                )
            repair_id = self._next_repair
            self._next_repair += 1
            repairs.append(repair_id)
            run.life_cycle_state, run.result_state, run.state_message = "RUNNING", None, ""
            self._changes += 1
        return {"repair_id": repair_id}
