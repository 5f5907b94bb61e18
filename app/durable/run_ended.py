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
"""

from __future__ import annotations

import logging

from resonate.resonate import Resonate

from app.durable.errors import NotTriedAgain
from app.durable.resonate_format import get_promise, rejection

logger = logging.getLogger(__name__)

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
        logger.warning("could not read run %s before trying its step again: %s", run_id, exc)
        return None
    if record is None:  # only a settled run is purged
        return f"run {run_id} ended (and is gone)"
    if record.state == "pending":
        return None
    return f"run {run_id} ended ({ENDED_AS.get(record.state, record.state)})"


async def reject_step(resonate: Resonate, step_id: str, error: NotTriedAgain) -> None:
    """Reject the step's promise with ``error``'s message, as the SDK no longer can."""
    try:
        await resonate.promises.reject(step_id, rejection(str(error)))
    except Exception as exc:  # noqa: BLE001 -- its deadline settles it instead
        logger.warning("could not record that step %s was not tried again: %s", step_id, exc)
