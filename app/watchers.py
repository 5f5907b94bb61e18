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
* :func:`watch_run` watches a Databricks run from its start to its end, for three things:

  - **A run that ended without calling back** (cluster lost, notebook killed, failure
    before the callback cell). Once a grace period for an in-flight callback has
    passed, the wait is rejected with the run's state message -- or, if the run ended
    SUCCESS with a ``dbutils.notebook.exit`` value, resolved with that value
    (app.exit_values), so notebooks that cannot reach DARA still work. A run that ended
    FAILED or TIMEDOUT is given ``DARA_REPAIR_WINDOW`` first (:func:`repairable_until`):
    a repair (app.services.repairing) makes it run again, and the watcher goes on waiting.
  - **A run DARA no longer waits for.** When the wait ended any way but resolved (it
    timed out, was cancelled, was abandoned by a failing pipeline, or this watcher
    rejected it), when the run itself ended not resolved, or when the run's deadline
    is about to end everything while the wait is pending, a Databricks run that still
    runs is cancelled (``steps.jobs.cancel_run``, a durable step: a crash before it
    is recorded runs it again on the worker that takes over).
  - **How the Databricks run ended** (SUCCESS, FAILED, CANCELED, ...), recorded as the
    result of the run's watcher, which ``GET /runs/{id}`` shows on the Databricks run.

  Its looks cost Databricks almost nothing: a run is looked up in one listing of the
  workspace's active runs per ``DARA_WATCH_INTERVAL``, shared by every watcher of the
  process (app.active_runs), and only a run missing from it is read on its own. The
  watcher looks once per interval, so a run that dies is noticed within two
  intervals (the listing's age, then the look) plus the grace period. With run events
  on, Databricks' notification that a run ended has it checked at once, by the same
  :func:`check_run` (app.services.run_events), and the listing is a paced backstop.

  The watcher the pipeline starts holds the record: it creates a promise, starts the
  first look and waits for the last look to settle that promise with how the run
  ended. Each look schedules the next as a fresh detached call, so a long wait never
  builds a long history to replay.

The first write wins on a promise, so a callback that arrives after a watcher gave up
finds the promise settled and is answered 409 (app.routers.callbacks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.jobs import RunLifeCycleState
from resonate.resonate import Resonate
from resonate.timing import now_ms
from resonate.types import Value

from app import repair_windows
from app.active_runs import ActiveRuns
from app.durable.context import Context
from app.durable.errors import StepError, WaitTimedOut
from app.durable.pipeline import PipelineFunction
from app.durable.resonate_format import rejection, run_of
from app.durable.step import StepInfo
from app.exit_values import read_exit_values
from app.services.run_status import links_host, run_link
from app.settings import Settings
from app.watched_runs import WatchedRun, WatchedRuns
from steps.jobs import REPAIRABLE_RESULTS, JobRun, cancel_run, run_state
from steps.run_errors import failed_task_errors

logger = logging.getLogger(__name__)

#: The names the watchers are registered under (app.wiring), and that each schedules its next look by.
EXPIRE = "dara.expire_promise"
WATCH = "dara.watch_run"

#: How long a notebook's callback may still be in flight after its run ended.
GRACE_SECONDS = 5
#: How long before the run's deadline a Databricks run it still waits for is cancelled:
#: at the deadline the watcher ends with the run, so it must act before.
DEADLINE_MARGIN_SECONDS = 30.0
#: The record promise's timeout; the SDK bounds it by the watcher's, the run's deadline.
_RECORD_TIMEOUT = timedelta(days=366)

#: What a look found: the wait still ``waiting`` on a running run; the run ``ended``
#: with the wait pending (a final look follows the grace period); the wait
#: ``rejected`` by this look, or already ``settled`` (by anyone); Databricks or
#: Resonate ``unreachable``; or the run's ``deadline`` upon a pending wait.
Verdict = Literal["waiting", "ended", "settled", "rejected", "unreachable", "deadline"]
_ENDED = {RunLifeCycleState.TERMINATED, RunLifeCycleState.INTERNAL_ERROR, RunLifeCycleState.SKIPPED}


# -- deadlines ----------------------------------------------------------------------


async def expire(resonate: Resonate, promise_id: str, timeout: float) -> str:
    """Reject the promise as timed out if nobody settled it in time."""
    record = await resonate.promises.get(promise_id)
    if record.state != "pending":
        return record.state
    message = str(WaitTimedOut(promise_id, record.created_at + round(timeout * 1000)))
    settled = await resonate.promises.reject(promise_id, rejection(message))
    return settled.state


def expire_promise(ctx: Context, promise_id: str, timeout: float) -> Generator[Any, Any, str]:
    # Started with the promise, so sleeping the whole timeout ends at its deadline (to
    # within milliseconds); expire() still checks it is pending before rejecting it.
    yield ctx.sleep(timedelta(seconds=timeout))
    return (yield from ctx.run(expire, promise_id, timeout))


# -- Databricks runs ------------------------------------------------------------------


@dataclass(frozen=True)
class Look:
    """What one look at a watched run found, and what its watcher does next."""

    verdict: Verdict
    #: Seconds until the next look.
    seconds: float = 0.0
    #: Cancel the Databricks run: it still runs, and nobody waits for it any more.
    cancel: bool = False
    #: How the Databricks run ended (``SUCCESS``, ``FAILED``, ``CANCELED``, ...), once it
    #: did and the wait is settled: the watch is over.
    state: str | None = None
    #: The wait's state once it is settled (``resolved``, ``rejected_timedout``, ...).
    wait: str | None = None


async def look_at_run(
    resonate: Resonate,
    w: WorkspaceClient,
    active: ActiveRuns,
    settings: Settings,
    watched: WatchedRuns,
    info: StepInfo,
    run: JobRun,
    promise_id: str,
    check: int,
    settle: bool = False,
    final: bool = False,
    cancelled: bool = False,
) -> Look:
    """One look at the wait and the Databricks run (the watcher's step).

    Never raises: a look that cannot be made (Databricks or Resonate unreachable) is
    made again an interval later. Not forever -- the wait's own deadline settles it.
    Each look notes the run in ``watched``, so that a run event for it can be checked.
    """
    watched.note(WatchedRun(run, promise_id, settle, info.deadline_ms))
    try:
        look = await _look(resonate, w, active, settings, info, run, promise_id, check, settle, final, cancelled)
    except Exception as exc:  # noqa: BLE001 -- see the docstring
        logger.warning(
            "could not look at Databricks run %s (next look in %.0f s): %s", run.run_id, active.interval, exc
        )
        return Look("unreachable", seconds=_pace(active.interval, _seconds_left(info)))
    if look.state is not None:
        watched.forget(run.run_id)
    return look


async def _look(
    resonate: Resonate,
    w: WorkspaceClient,
    active: ActiveRuns,
    settings: Settings,
    info: StepInfo,
    run: JobRun,
    promise_id: str,
    check: int,
    settle: bool,
    final: bool,
    cancelled: bool,
) -> Look:
    left = _seconds_left(info)
    pace = _pace(active.interval, left)
    near_deadline = left <= DEADLINE_MARGIN_SECONDS and await _deadline_near(resonate, info.run_id)
    if check <= 1 and not final and not near_deadline:
        # The first look comes as the run starts, before any listing could show it:
        # reading it on its own would cost a call per run started. Wait an interval.
        return Look("waiting", seconds=pace)
    if cancelled:
        # Only a deadline cancels a run whose wait is pending: let the wait time out with
        # the run, rather than fail it as a run that ended without calling back.
        verdict: Verdict = "deadline"
    else:
        verdict = await check_run(resonate, w, run, promise_id, final, settle, active=active, settings=settings)
    if verdict == "ended" or (verdict == "waiting" and not near_deadline):
        return Look(verdict, seconds=pace)
    if verdict == "waiting":
        verdict = "deadline"  # the wait will time out with the run: what it waits for is moot
    # Nobody waits for the run any more (or soon will not): see it end, cancelling it
    # unless the wait was resolved and the run it belongs to has not failed.
    wait = await resonate.promises.get(promise_id)
    root = await resonate.promises.get(info.run_id)
    give_up = wait.state != "resolved" or root.state not in ("pending", "resolved")
    state = await _final_state(w, active, run, trust_listing=not cancelled)
    if state is None:
        return Look(verdict, seconds=pace, cancel=give_up and not cancelled)
    return Look(verdict, state=state, wait=wait.state)


async def _deadline_near(resonate: Resonate, run_id: str) -> bool:
    """Whether the run's own deadline is within the margin. A step's deadline, which the
    watcher's is read from, is the run's only within a day of it: the SDK gives every
    promise a day at most, and a watcher cut short so must not cancel what still runs."""
    root = await resonate.promises.get(run_id)
    return root.timeout_at - now_ms() <= DEADLINE_MARGIN_SECONDS * 1000


async def _final_state(w: WorkspaceClient, active: ActiveRuns, run: JobRun, *, trust_listing: bool) -> str | None:
    """How the run ended, or None while it runs. After a cancel, the listing (up to an
    interval old) would still show the run: it is read on its own then. A run already
    read as ended (by a run event, or this watcher's final look) is not read again."""
    if (ended := active.ended_as(run.run_id)) is not None:
        return ended
    if trust_listing and await active.is_active(run.run_id):
        return None
    details = await asyncio.to_thread(w.jobs.get_run, run.run_id)
    if details.state is None or details.state.life_cycle_state not in _ENDED:
        active.saw_active(run.run_id)
        return None
    return run_state(details.state)


def _seconds_left(info: StepInfo) -> float:
    return (info.deadline_ms - now_ms()) / 1000


def _pace(interval: float, left: float) -> float:
    """Seconds to the next look: an interval, but one look falls just inside the
    deadline margin, so that a run still going then is cancelled in time."""
    if left > DEADLINE_MARGIN_SECONDS:
        seconds = min(interval, left - DEADLINE_MARGIN_SECONDS)
    else:
        seconds = min(interval, left / 2)
    return max(seconds, min(interval, 1.0))


async def report_end(resonate: Resonate, promise_id: str, ended: dict[str, Any]) -> None:
    """Settle the record promise of the run's watcher with how the run ended."""
    if (await resonate.promises.get(promise_id)).state == "pending":
        await resonate.promises.resolve(promise_id, Value(data=ended))


async def check_run(
    resonate: Resonate,
    w: WorkspaceClient,
    run: JobRun,
    promise_id: str,
    final: bool,
    settle: bool = False,
    *,
    active: ActiveRuns,
    settings: Settings,
    details: jobs.Run | None = None,
) -> Verdict:
    """Look at the promise and the run; on the ``final`` look, settle it if the run ended.

    A run that ended without calling back rejects the promise -- unless it ended
    SUCCESS with a ``dbutils.notebook.exit`` value, which resolves it, or ``settle``
    says nobody was going to call back (a job of plain notebooks), in which case a
    successful run resolves it with the per-task results. A run still in the listing
    of active runs is not read at all; ``details`` is the run as a run event just read
    it (app.services.run_events), whatever the listing says.
    """
    if (await resonate.promises.get(promise_id)).state != "pending":
        return "settled"
    if details is None:
        if await active.is_active(run.run_id):
            return "waiting"
        details = await asyncio.to_thread(w.jobs.get_run, run.run_id)
    state = details.state
    if state is None or state.life_cycle_state not in _ENDED:
        active.saw_active(run.run_id)  # started after the listing: not read again until the next
        return "waiting"
    if (until := repairable_until(details, settings)) > now_ms():
        # POST /runs/{id}/repair may still rerun its failed tasks: GET /runs/{id} says until when.
        if not settings.uses_embedded_workspace and details.end_time:  # which cannot repair
            await repair_windows.note_open(resonate, run_of(promise_id), run.run_id, details.end_time, until)
        return "waiting"
    if not final:
        return "ended"
    active.saw_ended(run.run_id, run_state(state))  # its watcher records that without reading it again
    outcome = state.result_state.value if state.result_state else state.life_cycle_state.value
    report = run_report(details)
    if settle and outcome == "SUCCESS":
        await resonate.promises.resolve(promise_id, Value(data=report))
        return "settled"
    if outcome == "SUCCESS":
        exits = await asyncio.to_thread(
            read_exit_values, w, details, max_bytes=settings.max_value_bytes, max_depth=settings.max_json_depth
        )
        if exits.problem is not None:
            message = f"Databricks run {run.run_id} ended SUCCESS, but {exits.problem}; see {_link(run, settings)}"
            settled = await resonate.promises.reject(promise_id, rejection(message))
            return "rejected" if settled.state == "rejected" else "settled"
        if exits.found:
            await resonate.promises.resolve(promise_id, Value(data=exits.value))
            return "settled"
    errors = await asyncio.to_thread(failed_task_errors, w, details)  # what the notebooks raised
    failed = "; ".join(
        f"task {t['task']} {t['result']} ({t['message']})" + (f": {errors[t['task']]}" if t["task"] in errors else "")
        for t in report["tasks"]
        if t["result"] != "SUCCESS"
    )
    message = (
        f"Databricks run {run.run_id} ended {outcome}"
        f"{'' if settle else ' without calling back'}"
        f" ({failed or state.state_message or 'no state message'}); see {_link(run, settings)}"
    )
    settled = await resonate.promises.reject(promise_id, rejection(message))
    return "rejected" if settled.state == "rejected" else "settled"


def ended_state(run: jobs.Run, settings: Settings) -> str | None:
    """How ``run`` ended (``SUCCESS``, ``FAILED``, ...); None while it runs, or while a
    repair may still run it again (``DARA_REPAIR_WINDOW``)."""
    state = run.state
    if state is None or state.life_cycle_state not in _ENDED or repairable_until(run, settings) > now_ms():
        return None
    return run_state(state)


def repairable_until(run: jobs.Run, settings: Settings) -> int:
    """Until when (epoch ms) the wait of a run that ended failed is held open for a repair
    (``DARA_REPAIR_WINDOW`` after it ended), or 0 if it is not.

    Dated by Databricks' end time, not by when a watcher first saw the end, so every look
    -- on any worker, after any restart -- agrees without the watcher carrying state, and
    a repaired run that fails again gets a window of its own.
    """
    window = round(settings.repair_window.total_seconds() * 1000)
    state = run.state
    if window <= 0 or state is None or state.result_state not in REPAIRABLE_RESULTS or not run.end_time:
        return 0
    return run.end_time + window


def _link(run: JobRun, settings: Settings) -> str:
    """The run's link as ``GET /runs/{id}`` shows it (DARA's own page, on the embedded workspace)."""
    if settings.uses_embedded_workspace:
        return run_link(links_host(settings, None), run.job_id, run.run_id) or run.url
    return run.url


def run_report(run: jobs.Run) -> dict[str, Any]:
    """A finished run and each of its tasks: what users want to see of it."""
    tasks = [
        {
            "task": task.task_key,
            "result": run_state(task.state),
            "message": (task.state.state_message if task.state else None) or "",
            "run_id": task.run_id,
        }
        for task in run.tasks or []
    ]
    return {"run_id": run.run_id, "result": run_state(run.state), "tasks": tasks}


def watch_run(
    ctx: Context,
    run: JobRun,
    promise_id: str,
    check: int = 0,
    settle: bool = False,
    record_to: str | None = None,
    cancelled: bool = False,
) -> Generator[Any, Any, Any]:
    """Watch ``run`` for the wait ``promise_id`` (see the module's docstring).

    Started by ``ctx.watch`` as ``check`` 0: that call holds the record and returns how
    the Databricks run ended. Every later ``check`` is one look, which schedules the
    next and returns its verdict -- or, on the last, settles ``record_to``.
    """
    if check == 0 and record_to is None:
        ended = ctx.promise(_RECORD_TIMEOUT)
        record_to = yield ended.id()
        yield ctx.detach(WATCH, run, promise_id, 1, settle, record_to, False)
        return (yield ended)
    look = yield from ctx.run(look_at_run, run, promise_id, check, settle=settle, cancelled=cancelled)
    if look.verdict == "ended":
        if not settle:  # a callback may still be on its way
            yield ctx.sleep(timedelta(seconds=GRACE_SECONDS))
        look = yield from ctx.run(look_at_run, run, promise_id, check, settle=settle, final=True, cancelled=cancelled)
    if look.cancel:
        try:
            yield ctx.run(cancel_run, run.run_id)
            cancelled = True
        except StepError:
            pass  # Databricks refused or is unreachable past the step's retries: the next look asks again
    if look.state is not None:
        ended_as = {"run_id": run.run_id, "state": look.state, "wait": look.wait, "cancelled": cancelled}
        if record_to is not None:
            yield ctx.run(report_end, record_to, ended_as)
        return ended_as
    yield ctx.sleep(timedelta(seconds=look.seconds))
    yield ctx.detach(WATCH, run, promise_id, check + 1, settle, record_to, cancelled)
    return look.verdict


#: The watchers, by the name they are registered under (app.wiring).
WATCHERS: dict[str, PipelineFunction] = {EXPIRE: expire_promise, WATCH: watch_run}
