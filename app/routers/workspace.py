"""The workspace's jobs and Lakeflow pipelines, for the console's browser (and anyone):
searched, filtered and paged on the server (app.workspace_browser)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from databricks.sdk.errors import DatabricksError, NotFound
from fastapi import APIRouter, HTTPException, Path, Query

from app.dependencies import RuntimeDep
from app.workspace_browser import (
    JobDetail,
    JobFilter,
    JobRow,
    Page,
    PipelineDetail,
    PipelineFilter,
    PipelineRow,
    Schedule,
    job_detail,
    list_jobs,
    list_pipelines,
    pipeline_detail,
)

router = APIRouter(prefix="/workspace", tags=["workspace"])

PIPELINE_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
Search = Annotated[str, Query(max_length=200, description="Fuzzy search on names (an exact id matches too).")]
Creator = Annotated[str, Query(max_length=256, description="Only items this user created.")]
Cursor = Annotated[int, Query(ge=0, le=1_000_000, description="From a page's `next_cursor`.")]
Limit = Annotated[int, Query(ge=1, le=100)]
WORKSPACE_FAILED: dict[int | str, dict[str, Any]] = {502: {"description": "The workspace failed to answer."}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "The workspace has no such item."},
    **WORKSPACE_FAILED,
}


@router.get("/jobs", response_model=Page[JobRow], responses=WORKSPACE_FAILED)
async def jobs(
    runtime: RuntimeDep,
    q: Search = "",
    creator: Creator = "",
    schedule: Schedule = "any",
    tag: Annotated[str, Query(max_length=256, description="`key` or `key=value`.")] = "",
    cursor: Cursor = 0,
    limit: Limit = 20,
) -> Page[JobRow]:
    """The workspace's jobs, best matches first when searching, a page at a time."""
    wanted = JobFilter(query=q, creator=creator, schedule=schedule, tag=tag)
    return await _call(list_jobs, runtime.workspace, wanted, cursor, limit)


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=NOT_FOUND)
async def job(runtime: RuntimeDep, job_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> JobDetail:
    """A job: its tasks, schedule, tags and latest runs with their states."""
    return await _call(job_detail, runtime.workspace, job_id, missing=f"the workspace has no job {job_id}")


@router.get("/pipelines", response_model=Page[PipelineRow], responses=WORKSPACE_FAILED)
async def pipelines(
    runtime: RuntimeDep,
    q: Search = "",
    creator: Creator = "",
    state: Annotated[str, Query(max_length=32, pattern=r"^[A-Za-z_]*$", description="IDLE, RUNNING, FAILED, ...")] = "",
    cursor: Cursor = 0,
    limit: Limit = 20,
) -> Page[PipelineRow]:
    """The workspace's Lakeflow pipelines, best matches first when searching, a page at a time."""
    wanted = PipelineFilter(query=q, creator=creator, state=state)
    return await _call(list_pipelines, runtime.workspace, wanted, cursor, limit)


@router.get("/pipelines/{pipeline_id}", response_model=PipelineDetail, responses=NOT_FOUND)
async def pipeline(
    runtime: RuntimeDep, pipeline_id: Annotated[str, Path(pattern=PIPELINE_ID_PATTERN)]
) -> PipelineDetail:
    """A Lakeflow pipeline: creator, state, id, target and source libraries."""
    return await _call(
        pipeline_detail, runtime.workspace, pipeline_id, missing=f"the workspace has no pipeline {pipeline_id!r}"
    )


async def _call[T](function: Callable[..., T], *args: Any, missing: str = "not found") -> T:
    """Run a blocking SDK read on a thread; the workspace's refusals as HTTP answers."""
    try:
        return await asyncio.to_thread(function, *args)
    except NotFound:
        raise HTTPException(404, missing) from None
    except DatabricksError as exc:
        raise HTTPException(502, f"the workspace failed: {exc}") from None
