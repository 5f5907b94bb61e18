"""Durable watchers that keep a waiting pipeline from waiting forever.

Two ways a wait can go wrong, and one watcher for each. Both run as *detached*
Resonate functions -- on any worker, surviving restarts, holding nothing in memory
while they sleep -- and both end their wait by rejecting the promise the pipeline is
waiting on, so the pipeline fails with a clear message instead of hanging.

* :func:`expire_promise` enforces a wait's deadline on a backend DARA does not count
  on for it (``WaitDefaults.backend_times_out`` false): ``Context.promise()`` then
  starts one per wait. DARA's in-process server times waits out itself
  (app.durable.in_process), and so does the Resonate server v0.9.8: every second it
  times out every pending promise past its timeout, with or without a target.
* :func:`watch_run` notices a Databricks run that ended without calling back (cluster
  lost, notebook killed, failure before the callback cell). It checks the run with
  backoff; once the run is over and a grace period for an in-flight callback has
  passed, it rejects the promise with the run's state message. Each check schedules
  the next as a fresh detached call, so a long wait never builds a long history to
  replay.

The first write wins on a promise, so a callback that arrives after a watcher gave up
finds the promise settled and is answered 409 (app.routers.callbacks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from datetime import timedelta
from typing import Any, Literal

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.jobs import RunLifeCycleState
from resonate.resonate import Resonate
from resonate.types import Value

from app.durable.context import EXPIRE, WATCH, Context
from app.durable.errors import StepError, WaitTimedOut
from app.durable.pipeline import drive
from steps.jobs import JobRun

#: Seconds between checks of a Databricks run: quick at first, then every 30 s.
BACKOFF = (2, 4, 8, 15, 30)
#: How long a notebook's callback may still be in flight after its run ended.
GRACE_SECONDS = 5

Verdict = Literal["waiting", "ended", "settled", "rejected"]
_ENDED = {RunLifeCycleState.TERMINATED, RunLifeCycleState.INTERNAL_ERROR, RunLifeCycleState.SKIPPED}


# -- deadlines ----------------------------------------------------------------------


async def expire(resonate: Resonate, promise_id: str, timeout: float) -> str:
    """Reject the promise as timed out if nobody settled it in time."""
    record = await resonate.promises.get(promise_id)
    if record.state != "pending":
        return record.state
    message = str(WaitTimedOut(promise_id, record.created_at + round(timeout * 1000)))
    settled = await resonate.promises.reject(promise_id, Value(data={"__type": "error", "message": message}))
    return settled.state


def expire_promise(ctx: Context, promise_id: str, timeout: float) -> Generator[Any, Any, str]:
    # Started with the promise, so sleeping the whole timeout ends at its deadline (to
    # within milliseconds); expire() still checks it is pending before rejecting it.
    yield ctx.sleep(timedelta(seconds=timeout))
    return (yield ctx.run(expire, promise_id, timeout))


# -- Databricks runs ------------------------------------------------------------------


async def check_run(
    resonate: Resonate,
    w: WorkspaceClient,
    run: JobRun,
    promise_id: str,
    final: bool,
    settle: bool = False,
) -> Verdict:
    """Look at the promise and the run; on the ``final`` look, settle it if the run ended.

    A run that ended without calling back rejects the promise -- unless ``settle``
    says nobody was going to call back (a job of plain notebooks), in which case a
    successful run resolves it with the per-task results.
    """
    if (await resonate.promises.get(promise_id)).state != "pending":
        return "settled"
    details = await asyncio.to_thread(w.jobs.get_run, run.run_id)
    state = details.state
    if state is None or state.life_cycle_state not in _ENDED:
        return "waiting"
    if not final:
        return "ended"
    outcome = state.result_state.value if state.result_state else state.life_cycle_state.value
    report = run_report(details)
    if settle and outcome == "SUCCESS":
        await resonate.promises.resolve(promise_id, Value(data=report))
        return "settled"
    failed = "; ".join(
        f"task {t['task']} {t['result']} ({t['message']})" for t in report["tasks"] if t["result"] != "SUCCESS"
    )
    message = (
        f"Databricks run {run.run_id} ended {outcome}"
        f"{'' if settle else ' without calling back'}"
        f" ({failed or state.state_message or 'no state message'}); see {run.url}"
    )
    settled = await resonate.promises.reject(promise_id, Value(data={"__type": "error", "message": message}))
    return "rejected" if settled.state == "rejected" else "settled"


def run_report(run: jobs.Run) -> dict[str, Any]:
    """A finished run and each of its tasks: what users want to see of it."""
    tasks = [
        {
            "task": task.task_key,
            "result": _outcome(task.state),
            "message": (task.state.state_message if task.state else None) or "",
            "run_id": task.run_id,
        }
        for task in run.tasks or []
    ]
    return {"run_id": run.run_id, "result": _outcome(run.state), "tasks": tasks}


def _outcome(state: jobs.RunState | None) -> str:
    if state is None:
        return "UNKNOWN"
    if state.result_state is not None:
        return state.result_state.value
    return state.life_cycle_state.value if state.life_cycle_state else "UNKNOWN"


def watch_run(
    ctx: Context, run: JobRun, promise_id: str, check: int = 0, settle: bool = False
) -> Generator[Any, Any, Verdict]:
    try:
        verdict: Verdict = yield ctx.run(check_run, run, promise_id, final=False, settle=settle)
        if verdict == "ended":
            if not settle:  # a callback may still be on its way
                yield ctx.sleep(timedelta(seconds=GRACE_SECONDS))
            verdict = yield ctx.run(check_run, run, promise_id, final=True, settle=settle)
    except StepError:
        # Databricks (or Resonate) unreachable past the step's retries: look again
        # later. Not forever -- the wait's own deadline settles the promise.
        verdict = "waiting"
    if verdict == "waiting":
        yield ctx.sleep(timedelta(seconds=BACKOFF[min(check, len(BACKOFF) - 1)]))
        yield ctx.detach(WATCH, run, promise_id, check + 1, settle)
    return verdict


#: The watchers, by the name they are registered under.
WATCHERS = {EXPIRE: expire_promise, WATCH: watch_run}


def register_watchers(resonate: Resonate) -> None:
    """Register the watchers; every worker that runs pipelines needs them."""
    for name, watcher in WATCHERS.items():
        resonate.register(drive(watcher), name=name)
    resonate.with_dependency(resonate)
