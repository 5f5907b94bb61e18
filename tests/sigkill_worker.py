"""A DARA worker process that a test kills with SIGKILL (tests/test_faults.py).

    python -m tests.sigkill_worker      # python -m app, plus the pipeline below

``blocks_in_a_step(marker)`` runs one step that appends its process's pid to ``marker``
and then, where ``DARA_TEST_BLOCK_STEP=1`` (the process the test kills), blocks until the
process dies: the test knows the step is running once the pid is in the file. A worker
that takes the run over executes the step again -- it was never recorded -- and it
returns that worker's pid.

Hold points (``tests/test_postgres_sigkill.py``): with ``DARA_TEST_HOLD_AT`` set to a point
of the notebook loop, the first worker process to reach it -- of all those sharing
``DARA_TEST_HOLD_MARKER`` -- writes its pid to that file and blocks there until it is
killed; every later arrival (the worker that takes the run over) passes through. The
file is created exclusively, so "first" holds across processes without a lock:

* ``before_run_now``: in ``jobs.run_now``, before Databricks hears of the run;
* ``accepted_not_recorded``: in ``jobs.run_now``, after Databricks answered, before the
  step ``run_job`` returns (so before its result is recorded);
* ``callback_arrived``: in ``notify``, the step after the callback resumed the run.

With ``DARA_TEST_RUN_NOW_LOG`` each run-now answer is appended there as ``pid run_id``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from databricks.sdk.service.jobs import JobsAPI

import pipelines.notebook_job
from app.durable import Context, Pipeline, pipeline
from pipelines import PIPELINES
from steps.notify import NotifyConfig
from steps.notify import notify as real_notify

#: Set in the environment of the process whose step blocks.
BLOCK = "DARA_TEST_BLOCK_STEP"
#: The point of the notebook loop the first worker to reach it holds at (see above).
HOLD_AT = "DARA_TEST_HOLD_AT"
#: The file the holding worker creates; shared by every worker of a test.
HOLD_MARKER = "DARA_TEST_HOLD_MARKER"
#: Where each run-now answer is appended, as ``pid run_id``.
RUN_NOW_LOG = "DARA_TEST_RUN_NOW_LOG"
HOLD_POINTS = ("before_run_now", "accepted_not_recorded", "callback_arrived")


def records_its_pid(marker: str) -> int:
    with Path(marker).open("a") as file:
        file.write(f"{os.getpid()}\n")
    if os.environ.get(BLOCK) == "1":
        time.sleep(600)  # until SIGKILL
    return os.getpid()


@pipeline
def blocks_in_a_step(ctx: Context, marker: str) -> Generator[Any, Any, int]:
    """One step, ``records_its_pid``; returns the pid of the process that completed it."""
    return (yield ctx.run(records_its_pid, marker))


#: What this worker runs: the service's pipelines and the one above.
WORKER_PIPELINES: tuple[Pipeline, ...] = (*PIPELINES, blocks_in_a_step)


def hold_if_first(point: str) -> None:
    """Block until killed if this process is the first to reach ``point``; else return."""
    if os.environ.get(HOLD_AT) != point:
        return
    try:
        with Path(os.environ[HOLD_MARKER]).open("x") as marker:  # exclusive: one holder in all
            marker.write(f"{os.getpid()}\n")
    except FileExistsError:
        return  # another worker held here (and was killed): this one takes the run over
    time.sleep(600)  # until SIGKILL


def install_hold_points() -> None:
    """Wrap ``jobs.run_now`` and the notebook loop's ``notify`` with the hold points."""
    run_now = JobsAPI.run_now

    @functools.wraps(run_now)
    def held_run_now(self: JobsAPI, *args: Any, **kwargs: Any) -> Any:
        hold_if_first("before_run_now")
        started = run_now(self, *args, **kwargs)
        if log := os.environ.get(RUN_NOW_LOG):
            with Path(log).open("a") as file:
                file.write(f"{os.getpid()} {started.run_id}\n")
        hold_if_first("accepted_not_recorded")
        return started

    def notify(config: NotifyConfig, message: str, details: dict[str, Any] | None = None) -> bool:
        hold_if_first("callback_arrived")
        return real_notify(config, message, details)

    JobsAPI.run_now = held_run_now  # type: ignore[method-assign]
    pipelines.notebook_job.notify = notify  # type: ignore[assignment]  # the name the pipeline calls


if __name__ == "__main__":
    from app.__main__ import main

    install_hold_points()
    main(pipelines_to_run=WORKER_PIPELINES)
