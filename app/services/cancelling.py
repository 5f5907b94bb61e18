"""Where a run is cancelled: its Databricks runs, its pending waits, then the run itself."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from app.durable.resonate_format import rejection
from app.runtime import Runtime
from app.security import audit
from app.services.errors import NotYours, RunEnded, RunNotFound
from app.services.run_status import RunView, read_run
from steps.jobs import cancel_run as cancel_databricks_run


class DatabricksCancel(BaseModel):
    run_id: int
    cancelled: bool
    error: str | None = None


class Cancellation(BaseModel):
    run: RunView
    databricks: list[DatabricksCancel] = Field(description="What became of each Databricks run it started.")


async def cancel(runtime: Runtime, run_id: str, user: str) -> Cancellation:
    """Cancel the Databricks runs a run started, and end the run as cancelled.

    Only whoever started the run, or one of DARA_ADMINS, may cancel it. Its pending
    waits are cancelled too, so watchers stop and a late callback is refused. Raises
    RunNotFound, NotYours or RunEnded.
    """
    run = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    if run is None:
        raise RunNotFound(run_id)
    if not runtime.may_cancel(user, run.started_by):
        audit(user, "was refused cancelling", run_id, run.pipeline)
        raise NotYours(run_id, run.started_by, user)
    if run.status not in ("running", "waiting"):
        raise RunEnded(run_id, run.status)
    databricks = [await _cancel_databricks(runtime, started.run_id) for started in run.databricks_runs]
    reason = rejection(f"cancelled through POST /runs/{run_id}/cancel")
    for step in run.steps:
        if step.kind == "callback" and step.state == "pending":
            await runtime.resonate.promises.cancel(step.id, reason)
    await runtime.resonate.promises.cancel(run_id, reason)
    cancelled = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    assert cancelled is not None
    if cancelled.status == "cancelled":  # the pipeline never ends it itself: count it here
        runtime.metrics.run_ended(run.pipeline, "cancelled", cancelled.elapsed_seconds)
    audit(user, "cancelled", run_id, run.pipeline)
    return Cancellation(run=cancelled, databricks=databricks)


async def _cancel_databricks(runtime: Runtime, run_id: int) -> DatabricksCancel:
    try:
        await asyncio.to_thread(cancel_databricks_run, runtime.workspace, run_id)
    except Exception as exc:  # noqa: BLE001 -- reported, not raised: the run is cancelled either way
        return DatabricksCancel(run_id=run_id, cancelled=False, error=f"{type(exc).__name__}: {exc}")
    return DatabricksCancel(run_id=run_id, cancelled=True)
