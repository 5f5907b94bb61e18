"""Whether the run a step works for has ended, for a step that waits to try again.

A step refused for capacity is tried again until its deadline (app.durable.retries). The
SDK does not stop it when its run ends meanwhile (cancelled, timed out, failed): the
step's coroutine goes on, and a try that got in would start a Databricks run that
nobody waits for, watches or cancels. So before each new try the step runner reads the
run's root promise (tries are seconds apart: one read each is cheap), and stops once
the run is no longer pending.

The step then fails, and its promise is rejected here, directly: the SDK settles a step
through its run's task, which the backend refuses once the run has ended, so without
this the step would read as pending until its deadline and its reason would be lost.

A step that starts a Databricks run has a second window: its run can end while the
start is in flight, and the run it started can then never be recorded, watched or
cancelled by DARA's records. Such a step declares how to stop what it started
(steps.undone); once it returned, the runner reads its run once more and, if the run
has ended, stops the work at once (:func:`undo_if_ended`). Steps that declare nothing
never pay that read. The run ending between this read and the step's record is left
to the orphan sweep (app.orphaned_runs).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from resonate.resonate import Resonate

from app.durable.errors import EndedWhileRunning, StepError
from app.durable.resonate_format import get_promise, rejection

logger = logging.getLogger(__name__)

#: The attribute a step's undo is found under (steps.undone.undone_if_run_ended sets it).
UNDO = "undo_if_run_ended"

#: How a run ended, in the words GET /runs/{id} uses, by its root promise's state.
ENDED_AS = {
    "resolved": "done",
    "rejected": "failed",
    "rejected_canceled": "cancelled",
    "rejected_timedout": "timed out",
}


async def how_ended(resonate: Resonate, run_id: str) -> str | None:
    """``"run <id> ended (<how>)"`` once the run is over, None while it is pending.

    A run that cannot be read is taken as pending: a backend's blip must not fail a live
    run's step (its next try cannot be recorded either if the backend stays away)."""
    try:
        record = await get_promise(resonate, run_id)
    except Exception as exc:  # noqa: BLE001 -- not knowing is no reason to stop
        logger.warning("could not read whether run %s ended: %s", run_id, exc)
        return None
    if record is None:  # only a settled run is purged
        return f"run {run_id} ended (and is gone)"
    if record.state == "pending":
        return None
    return f"run {run_id} ended ({ENDED_AS.get(record.state, record.state)})"


async def undo_if_ended(
    resonate: Resonate, run_id: str, name: str, step: Callable[..., Any], result: Any, arguments: dict[str, Any]
) -> None:
    """If ``step`` declares an undo and its run has ended, stop what it started and raise
    :class:`EndedWhileRunning`; a step that declares none costs nothing, not even a read.

    A failing undo still fails the step: its result cannot be recorded either way, and
    the orphan sweep is left to stop the work."""
    undo: Callable[..., str] | None = getattr(step, UNDO, None)
    if undo is None:
        return
    ended = await how_ended(resonate, run_id)
    if ended is None:
        return
    wanted = inspect.signature(undo).parameters
    named = {param: value for param, value in arguments.items() if param in wanted}
    try:
        undone = await asyncio.to_thread(undo, result, **named)
    except Exception as exc:  # noqa: BLE001 -- said in the step's error; the sweep tries later
        logger.warning("could not undo step %s of ended run %s: %s", name, run_id, exc)
        undone = f"stopping what it started failed ({type(exc).__name__}: {exc})"
    raise EndedWhileRunning(name, ended, undone)


async def reject_step(resonate: Resonate, step_id: str, error: StepError) -> None:
    """Reject the step's promise with ``error``'s message, as the SDK no longer can."""
    try:
        await resonate.promises.reject(step_id, rejection(str(error)))
    except Exception as exc:  # noqa: BLE001 -- its deadline settles it instead
        logger.warning("could not record that step %s was not tried again: %s", step_id, exc)
