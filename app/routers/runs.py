"""Starting runs and reading them back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field

from resonate.types import Value

from app.dependencies import RuntimeDep
from app.durable import ANONYMOUS
from app.durable.params import CALLBACK_URLS
from app.routers.answers import ID_TAKEN, NO_PIPELINE, NO_RUN, NOT_YOURS, RUN_ENDED
from app.runs import RUN_ID_PATTERN, RunPage, RunStatus, RunSummary, RunView, list_runs, read_run
from app.runtime import Runtime
from app.security import CurrentUser, audit
from steps.jobs import cancel_run as cancel_databricks_run

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


async def start(
    runtime: Runtime, run_id: str, pipeline_name: str, params: dict[str, Any], *, started_by: str = ANONYMOUS
) -> tuple[RunView, bool]:
    """Start a run for ``started_by``, or find the one already called ``run_id``; (run, created)."""
    pipeline = runtime.pipelines.get(pipeline_name)
    if pipeline is None:
        known = ", ".join(sorted(runtime.pipelines)) or "none"
        raise HTTPException(404, f"no pipeline named {pipeline_name!r}; known: {known}")
    # Resonate starts an id once whatever we do; the lock is so that of two requests
    # racing to start it, only one is told it created the run (in this process).
    async with runtime.starting(run_id):
        existing = await read_run(runtime.resonate, run_id, with_steps=False)
        if existing is not None:
            if existing.pipeline != pipeline.name:
                raise HTTPException(
                    409, f"run {run_id!r} exists and runs {existing.pipeline!r}; pick another id"
                )
            return await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host) or existing, False
        try:
            validated = pipeline.validate(params, context={CALLBACK_URLS: runtime.signer.allowed_urls})
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors()
            )
            raise HTTPException(422, f"bad params for {pipeline.name}: {problems}") from None
        await runtime.start_run(run_id, pipeline, validated, started_by=started_by)
        # A run a moment old has no steps worth a request each to read.
        run = await read_run(runtime.resonate, run_id, with_steps=False)
    assert run is not None
    return run, True


@router.post("/runs", response_model=RunView, status_code=status.HTTP_201_CREATED, responses=NO_PIPELINE | ID_TAKEN)
async def start_run(body: StartRun, runtime: RuntimeDep, user: CurrentUser, response: Response) -> RunView:
    """Start a pipeline. An id that exists already returns that run (200), never a second one."""
    pipeline = runtime.pipelines.get(body.pipeline)
    if pipeline is not None and (refusal := pipeline.caller_refusal(body.params)):
        raise HTTPException(422, refusal)
    run, created = await start(runtime, body.id or uuid.uuid4().hex, body.pipeline, body.params, started_by=user)
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
    params = {"job": runtime.settings.demo_job_name, "params": {}, "url": url}
    run, created = await start(runtime, id, "notebook_job", params, started_by=user)
    if created:
        audit(user, "started", run.id, run.pipeline)
    return RunSummary.of(run)


@router.get("/runs/{run_id}", response_model=RunView, responses=NO_RUN)
async def get_run(
    run_id: RunIdPath,
    runtime: RuntimeDep,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for the run to finish")
    ] = 0,
) -> RunView:
    """A run, its steps so far and its Databricks runs. ``wait`` long-polls for the end."""
    host = runtime.workspace_host
    run = await read_run(runtime.resonate, run_id, workspace_host=host)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}; start one with POST /runs")
    if wait and run.status in ("running", "waiting"):
        handle = await runtime.resonate.get(run_id)
        with contextlib.suppress(Exception):  # the outcome is read back below either way
            await asyncio.wait_for(handle.result(), timeout=wait)
        run = await read_run(runtime.resonate, run_id, workspace_host=host)
        assert run is not None
    return run


@router.get("/runs", response_model=RunPage)
async def get_runs(
    runtime: RuntimeDep,
    pipeline: Annotated[str | None, Query(max_length=128)] = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> RunPage:
    """Recent runs, newest first; filter by pipeline and status, page with ``cursor``."""
    try:
        return await list_runs(
            runtime.resonate,
            runtime.run_index,
            pipeline=pipeline,
            status=status,
            limit=limit,
            cursor=cursor,
            workspace_host=runtime.workspace_host,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


class DatabricksCancel(BaseModel):
    run_id: int
    cancelled: bool
    error: str | None = None


class Cancellation(BaseModel):
    run: RunView
    databricks: list[DatabricksCancel] = Field(description="What became of each Databricks run it started.")


@router.post("/runs/{run_id}/cancel", response_model=Cancellation, responses=NO_RUN | NOT_YOURS | RUN_ENDED)
async def cancel_run(run_id: RunIdPath, runtime: RuntimeDep, user: CurrentUser) -> Cancellation:
    """Cancel the Databricks runs a run started, and end the run as cancelled.

    Only whoever started the run, or one of DARA_ADMINS, may cancel it. Its pending
    waits are cancelled too, so watchers stop and a late callback is answered 409.
    """
    run = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    if not runtime.may_cancel(user, run.started_by):
        audit(user, "was refused cancelling", run_id, run.pipeline)
        raise HTTPException(
            403, f"run {run_id!r} was started by {run.started_by!r}, not you ({user!r}); only they "
            "or one of DARA_ADMINS may cancel it"
        )
    if run.status not in ("running", "waiting"):
        raise HTTPException(409, f"run {run_id!r} is already {run.status}; nothing to cancel")
    databricks = [await _cancel_databricks(runtime, started.run_id) for started in run.databricks_runs]
    reason = Value(data={"__type": "error", "message": f"cancelled through POST /runs/{run_id}/cancel"})
    for step in run.steps:
        if step.kind == "callback" and step.state == "pending":
            await runtime.resonate.promises.cancel(step.id, reason)
    await runtime.resonate.promises.cancel(run_id, reason)
    cancelled = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    assert cancelled is not None
    audit(user, "cancelled", run_id, run.pipeline)
    return Cancellation(run=cancelled, databricks=databricks)


async def _cancel_databricks(runtime: Runtime, run_id: int) -> DatabricksCancel:
    try:
        await asyncio.to_thread(cancel_databricks_run, runtime.workspace, run_id)
    except Exception as exc:  # reported, not raised: the run is cancelled either way
        return DatabricksCancel(run_id=run_id, cancelled=False, error=f"{type(exc).__name__}: {exc}")
    return DatabricksCancel(run_id=run_id, cancelled=True)
