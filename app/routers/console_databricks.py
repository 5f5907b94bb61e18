"""DARA's page of a Databricks run: where run links lead on the embedded workspace."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse, Response

from app.console.databricks_run import RunDetails, describe_run, is_final, render, version
from app.console.layout import page
from app.console.live import UNCHANGED, Seen, Wait, changed_fragment, live_attributes
from app.dependencies import RuntimeDep
from app.services.run_status import EMBEDDED_RUNS_PAGES

router = APIRouter(prefix=EMBEDDED_RUNS_PAGES, tags=["pages"], default_response_class=HTMLResponse)

RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The Databricks run id.")]
NO_DATABRICKS_RUN: dict[int | str, dict[str, Any]] = {404: {"description": "The workspace has no such run."}}


@router.get(
    "/runs/{run_id}", summary="A Databricks run: state, output and error of each task", responses=NO_DATABRICKS_RUN
)
async def databricks_run_page(run_id: RunId, runtime: RuntimeDep) -> str:
    details = await _describe(runtime, run_id)
    live = live_attributes(f"{EMBEDDED_RUNS_PAGES}/runs/{run_id}/live", version(details), is_final(details))
    body = f'<p><a href="/ui">← runs</a></p><section id="live"{live}>{render(details)}</section>'
    return page(f"Databricks run {run_id}", body, scripts=("live",))


@router.get(
    "/runs/{run_id}/live",
    summary="A Databricks run's page content, once it changed",
    responses=NO_DATABRICKS_RUN | UNCHANGED,
)
async def databricks_run_live(
    run_id: RunId,
    runtime: RuntimeDep,
    seen: Seen = "",
    wait: Wait = 20,
) -> Response:
    async def rendered() -> tuple[str, str, bool]:
        details = await _describe(runtime, run_id)
        return version(details), render(details), is_final(details)

    return await changed_fragment(rendered, seen, wait, until=runtime.draining)


@router.get(
    "/jobs/{job_id}/runs/{run_id}",
    summary="A Databricks run, by the workspace's URL shape",
    responses=NO_DATABRICKS_RUN,
)
async def databricks_job_run_page(job_id: RunId, run_id: RunId, runtime: RuntimeDep) -> str:
    """The path a workspace's own run link has (app.services.run_status.run_link), on DARA."""
    return await databricks_run_page(run_id, runtime)


async def _describe(runtime: RuntimeDep, run_id: int) -> RunDetails:
    details = await asyncio.to_thread(describe_run, runtime.workspace, run_id)
    if details is None:
        raise HTTPException(404, f"the workspace has no run {run_id}")
    return details
