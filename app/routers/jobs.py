"""Jobs from task graphs: preview the order, deploy and run.

Task graphs are read from folders under ``DARA_JOBS_ROOT`` (the service never reads
an arbitrary path a request names), with the compute config and task list either in
the folder (``compute.yaml``, ``tasks.yaml``) or in the request.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from app.dependencies import RuntimeDep
from app.routers.answers import ID_TAKEN, NO_FOLDER
from app.routers.runs import start
from app.runs import RUN_ID_PATTERN, RunView
from app.settings import Settings
from app.taskgraph import (
    TaskGraph,
    TaskGraphError,
    calls_back,
    job_settings,
    preview,
    validate,
    workspace_paths,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])


class Deploy(BaseModel):
    name: str = Field(min_length=1, max_length=256, description="The job's name; an existing job of that name is updated.")
    folder: str = Field(max_length=1024, description="Task-graph folder, relative to DARA_JOBS_ROOT.")
    compute: dict[str, Any] | None = Field(default=None, description="Compute config; default: the folder's compute.yaml|json.")
    tasks: list[dict[str, Any]] | None = Field(default=None, description="Task list; default: the folder's tasks.yaml|json.")
    workspace_dir: str | None = Field(default=None, description="Where the files go (default: DARA_NOTEBOOK_DIR/<name>).")
    run: bool = Field(default=True, description="Run the job after deploying it, and wait for it.")
    id: str | None = Field(default=None, pattern=RUN_ID_PATTERN, description="The run's id (default: random).")


class Preview(BaseModel):
    order: list[str]
    levels: list[list[str]]
    text: str


@router.post("/deploy", response_model=RunView, status_code=201, responses=NO_FOLDER | ID_TAKEN)
async def deploy(body: Deploy, runtime: RuntimeDep, response: Response) -> RunView:
    """Validate a task graph, then deploy it (and run it) as a durable `deploy_and_run` run.

    Every problem in the graph is reported at once (422) before anything is uploaded. A
    graph whose notebooks have the DARA callback cell is waited on through its callback;
    any other, through the run's state.
    """
    settings = runtime.settings
    folder = _folder(settings, body.folder)
    graph = _graph(folder, body.compute, body.tasks)
    workspace_dir = body.workspace_dir or f"{settings.notebook_dir}/{body.name}"
    try:
        files = workspace_paths(graph, workspace_dir)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    job = job_settings(graph, body.name, files).as_dict()
    params = {"folder": str(folder), "files": files, "job": job, "run": body.run, "callback": calls_back(graph)}
    run, created = await start(runtime, body.id or uuid.uuid4().hex, "deploy_and_run", params)
    if not created:
        response.status_code = 200
    return run


@router.get("/preview", response_model=Preview, responses={200: {"content": {"image/svg+xml": {}}}} | NO_FOLDER)
async def preview_graph(
    runtime: RuntimeDep,
    folder: Annotated[str, Query(max_length=1024, description="Relative to DARA_JOBS_ROOT.")],
    format: Literal["json", "text", "svg"] = "json",
) -> Any:
    """The task graph's run order, by levels of tasks that can run in parallel."""
    graph = _graph(_folder(runtime.settings, folder), None, None)
    shown = preview(graph)
    if format == "svg":
        return Response(shown.svg, media_type="image/svg+xml")
    if format == "text":
        return Response(shown.text, media_type="text/plain")
    return Preview(order=shown.order, levels=shown.levels, text=shown.text)


def _folder(settings: Settings, relative: str) -> Path:
    root = settings.jobs_root.resolve()
    try:
        folder = (root / relative).resolve()
        found = folder.is_relative_to(root) and folder.is_dir()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise HTTPException(422, f"folder {relative[:64]!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if not folder.is_relative_to(root):
        raise HTTPException(422, f"folder {relative!r} is outside DARA_JOBS_ROOT ({root})")
    if not found:
        raise HTTPException(404, f"no task-graph folder {relative!r} under DARA_JOBS_ROOT ({root})")
    return folder


def _graph(folder: Path, compute: dict[str, Any] | None, tasks: list[dict[str, Any]] | None) -> TaskGraph:
    try:
        if compute is not None and tasks is not None:
            graph = TaskGraph.from_data(compute, tasks, folder)
        elif compute is None and tasks is None:
            graph = TaskGraph.from_folder(folder)
        else:
            raise TaskGraphError(["send both compute and tasks, or neither (to use the folder's files)"])
        return validate(graph)
    except TaskGraphError as exc:
        raise HTTPException(422, {"message": "the task graph has problems", "problems": exc.problems}) from None
