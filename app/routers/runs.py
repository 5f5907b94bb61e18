"""Starting runs, reading them back and cancelling them, over HTTP (app.services does the work)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field

from app.dependencies import RuntimeDep
from app.routers.answers import ID_TAKEN, NO_PIPELINE, NO_RUN, NOT_REPAIRABLE, NOT_YOURS, RUN_ENDED
from app.security import CurrentUser, audit
from app.services import cancelling, reading, repairing, starting
from app.services.cancelling import Cancellation
from app.services.errors import RunNotFound
from app.services.repairing import Repair
from app.services.run_status import RUN_ID_PATTERN, RunPage, RunStatus, RunSummary, RunView

router = APIRouter(tags=["runs"])

MAX_WAIT_SECONDS = 60.0
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run's id.")]


class StartRun(BaseModel):
    pipeline: str = Field(max_length=128, description="A name from GET /pipelines.")
    id: str | None = Field(
        default=None,
        pattern=RUN_ID_PATTERN,
        description="Names the run; starting an existing id returns that run. Default: random.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="The pipeline's parameters.")


@router.post("/runs", response_model=RunView, status_code=status.HTTP_201_CREATED, responses=NO_PIPELINE | ID_TAKEN)
async def start_run(body: StartRun, runtime: RuntimeDep, user: CurrentUser, response: Response) -> RunView:
    """Start a pipeline. An id that exists already returns that run (200), never a second one."""
    run, created = await starting.start(
        runtime, body.id or uuid.uuid4().hex, body.pipeline, body.params, started_by=user, by_caller=True
    )
    audit(user, "started" if created else "asked again for", run.id, run.pipeline)
    if not created:
        response.status_code = status.HTTP_200_OK
    return run


@router.get("/run", response_model=RunSummary, responses=ID_TAKEN)
async def run_demo(
    runtime: RuntimeDep,
    user: CurrentUser,
    id: Annotated[str, Query(pattern=RUN_ID_PATTERN)],
    url: Annotated[
        str | None,
        Query(max_length=2048, description="Callback base URL: DARA_PUBLIC_URL or one of DARA_CALLBACK_URLS"),
    ] = None,
) -> RunSummary:
    """The original example's form: start the demo notebook job as ``id`` or report on it."""
    params: dict[str, Any] = {"job": runtime.settings.demo_job_name, "params": {}, "url": url}
    run, created = await starting.start(runtime, id, "notebook_job", params, started_by=user, by_caller=False)
    if created:
        audit(user, "started", run.id, run.pipeline)
    return RunSummary.of(run)


@router.get("/runs/{run_id}", response_model=RunView, responses=NO_RUN)
async def get_run(
    run_id: RunIdPath,
    runtime: RuntimeDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for the run to finish")] = 0,
) -> RunView:
    """A run, its steps so far and its Databricks runs. ``wait`` long-polls for the end."""
    try:
        return await reading.get_run(runtime, run_id, wait=wait)
    except RunNotFound as exc:
        raise HTTPException(404, f"{exc}; start one with POST /runs") from None


@router.get("/runs", response_model=RunPage)
async def get_runs(
    runtime: RuntimeDep,
    pipeline: Annotated[str | None, Query(max_length=128)] = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> RunPage:
    """Recent runs, newest first, as summaries without values; filter by pipeline and status,
    page with ``cursor``. A run's result, parameters and steps are in ``GET /runs/{id}``."""
    return await reading.list_runs(runtime, pipeline=pipeline, status=status, limit=limit, cursor=cursor)


@router.post("/runs/{run_id}/cancel", response_model=Cancellation, responses=NO_RUN | NOT_YOURS | RUN_ENDED)
async def cancel_run(run_id: RunIdPath, runtime: RuntimeDep, user: CurrentUser) -> Cancellation:
    """Cancel the Databricks runs a run started, and end the run as cancelled.

    Only whoever started the run, or one of DARA_ADMINS, may cancel it. Its pending
    waits are cancelled too, so watchers stop and a late callback is answered 409.
    """
    return await cancelling.cancel(runtime, run_id, user)


@router.post("/runs/{run_id}/repair", response_model=Repair, responses=NO_RUN | NOT_YOURS | NOT_REPAIRABLE)
async def repair_run(run_id: RunIdPath, runtime: RuntimeDep, user: CurrentUser) -> Repair:
    """Rerun only the failed tasks of the Databricks runs a run waits for; the run goes on waiting.

    A Databricks run that failed without calling back is repairable for DARA_REPAIR_WINDOW
    after it ended. Only whoever started the run, or one of DARA_ADMINS, may repair it.
    """
    return await repairing.repair(runtime, run_id, user)
