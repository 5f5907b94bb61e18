"""Where a run's failed Databricks runs are repaired: their failed tasks rerun, its waits kept.

A Databricks run that ended FAILED or TIMEDOUT without calling back keeps its wait open
for ``DARA_REPAIR_WINDOW`` (app.watchers). Repairing it within that window reruns only
its failed tasks, with the parameters it was started with -- the callback widgets among
them -- so the watcher sees it run again and the rerun notebook's callback settles the
same wait. The pipeline never notices: it goes on waiting.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from app import repair_windows
from app.runtime import Runtime
from app.security import audit
from app.services.errors import NotRepairable, NotYours, RunNotFound
from app.services.run_status import RunView, read_run
from steps.jobs import repair_run


class DatabricksRepair(BaseModel):
    run_id: int
    repair_id: int | None = Field(default=None, description="The repair's id; null if it was not repaired.")
    error: str | None = Field(default=None, description="Why it was not repaired.")


class Repair(BaseModel):
    run: RunView
    databricks: list[DatabricksRepair] = Field(description="What became of each Databricks run still watched.")


async def repair(runtime: Runtime, run_id: str, user: str) -> Repair:
    """Rerun the failed tasks of each Databricks run the run still waits for.

    Only whoever started the run, or one of DARA_ADMINS, may repair it. Raises
    RunNotFound, NotYours, or NotRepairable when not one Databricks run could be
    repaired (each one's reason is in the message).
    """
    run = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    if run is None:
        raise RunNotFound(run_id)
    if not runtime.may_cancel(user, run.started_by):
        audit(user, "was refused repairing", run_id, run.pipeline)
        raise NotYours(run_id, run.started_by, user, action="repair")
    if runtime.embedded is not None:
        raise NotRepairable(run_id, "the embedded workspace cannot repair runs; start the run again instead")
    if run.status not in ("running", "waiting"):
        raise NotRepairable(run_id, f"it is already {run.status}; start it again instead")
    # A watcher records a Databricks run's state once nothing waits for it any more.
    watched = [databricks.run_id for databricks in run.databricks_runs if databricks.state is None]
    if not watched:
        raise NotRepairable(run_id, "it waits for no Databricks run")
    repairs = [await _repair_databricks(runtime, run_id, databricks_run) for databricks_run in watched]
    if all(done.repair_id is None for done in repairs):
        raise NotRepairable(run_id, "; ".join(f"{done.error}" for done in repairs))
    audit(user, "repaired", run_id, run.pipeline)
    repaired = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    assert repaired is not None
    return Repair(run=repaired, databricks=repairs)


async def _repair_databricks(runtime: Runtime, run_id: str, databricks_run_id: int) -> DatabricksRepair:
    try:
        repair_id = await asyncio.to_thread(repair_run, runtime.workspace, databricks_run_id)
    except Exception as exc:  # noqa: BLE001 -- reported, not raised: the other runs may still be repaired
        return DatabricksRepair(run_id=databricks_run_id, error=f"{type(exc).__name__}: {exc}")
    # It runs again: no longer repairable (a failure of the rerun opens a window of its own).
    await repair_windows.close(runtime.resonate, run_id, databricks_run_id)
    return DatabricksRepair(run_id=databricks_run_id, repair_id=repair_id)
