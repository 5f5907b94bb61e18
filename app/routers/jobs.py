"""Jobs from task graphs: preview the order, deploy and run.

Task graphs are read from folders under ``DARA_JOBS_ROOT`` (the service never reads
an arbitrary path a request names), with the compute config and task list either in
the folder (``compute.yaml``, ``tasks.yaml``) or in the request.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from databricks.sdk.errors import DatabricksError
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from app.dependencies import RuntimeDep
from app.routers.answers import NO_FOLDER, answer
from app.runtime import Runtime
from app.security import CurrentUser, audit
from app.services import starting
from app.services.run_status import RUN_ID_PATTERN, RunView
from app.taskgraph import (
    TaskGraph,
    TaskGraphError,
    calls_back,
    job_settings,
    preview,
    validate,
    workspace_paths,
)
from app.taskgraph.models import COMPUTE_FILES, TASKS_FILES
from steps.jobs import JobNotManaged, check_managed
from steps.task_graph_root import TaskGraphPathError

router = APIRouter(prefix="/jobs", tags=["jobs"])

#: Both 409s of POST /jobs/deploy (ID_TAKEN's, and a job DARA does not manage).
TAKEN = answer(
    409,
    "The id names a run of another pipeline, or a job of that name exists that DARA did not create.",
)


class Deploy(BaseModel):
    name: str = Field(
        min_length=1,
        max_length=256,
        description="The job's name; an existing job of that name is updated if DARA created it (409 otherwise).",
    )
    folder: str = Field(max_length=1024, description="Task-graph folder, relative to DARA_JOBS_ROOT.")
    compute: dict[str, Any] | None = Field(
        default=None, description="Compute config; default: the folder's compute.yaml|json."
    )
    tasks: list[dict[str, Any]] | None = Field(
        default=None, description="Task list; default: the folder's tasks.yaml|json."
    )
    workspace_dir: str | None = Field(
        default=None,
        max_length=1024,
        description="Where the files go, under DARA_NOTEBOOK_DIR (default: DARA_NOTEBOOK_DIR/<name>).",
    )
    run: bool = Field(default=True, description="Run the job after deploying it, and wait for it.")
    id: str | None = Field(default=None, pattern=RUN_ID_PATTERN, description="The run's id (default: random).")


class Preview(BaseModel):
    order: list[str]
    levels: list[list[str]]
    text: str


@router.post("/deploy", response_model=RunView, status_code=201, responses=NO_FOLDER | TAKEN)
async def deploy(body: Deploy, runtime: RuntimeDep, user: CurrentUser, response: Response) -> RunView:
    """Validate a task graph, then deploy it (and run it) as a durable `deploy_and_run` run.

    Every problem in the graph is reported at once (422) before anything is uploaded. A
    graph whose notebooks have the DARA callback cell is waited on through its callback;
    any other, through the run's state. A job of that name that DARA did not create is
    left alone (409).
    """
    root = runtime.task_graphs
    folder = _folder(runtime, body.folder)
    graph = _graph(runtime, body.folder, folder, body.compute, body.tasks)
    workspace = runtime.workspace_root
    try:
        workspace_dir = workspace.check(body.workspace_dir or f"{workspace.path}/{body.name}", "workspace_dir")
        files = workspace_paths(graph, workspace_dir)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        await asyncio.to_thread(check_managed, runtime.workspace, body.name)
    except (JobNotManaged, LookupError) as exc:  # LookupError: several jobs have that name
        raise HTTPException(409, str(exc)) from None
    except DatabricksError as exc:
        raise HTTPException(
            503, f"could not check for a job named {body.name!r} in the workspace: {exc}; try again"
        ) from None
    job = job_settings(graph, body.name, files).as_dict()
    params = {
        "folder": root.relative(folder),  # relative: the step reads it through the same root
        "files": files,
        "job": job,
        "run": body.run,
        "callback": calls_back(graph),
    }
    run, created = await starting.start(
        runtime, body.id or uuid.uuid4().hex, "deploy_and_run", params, started_by=user, by_caller=False
    )
    audit(user, "started" if created else "asked again for", run.id, run.pipeline)
    if not created:
        response.status_code = 200
    return run


@router.get("/preview", response_model=Preview, responses={200: {"content": {"image/svg+xml": {}}}, **NO_FOLDER})
async def preview_graph(
    runtime: RuntimeDep,
    folder: Annotated[str, Query(max_length=1024, description="Relative to DARA_JOBS_ROOT.")],
    format: Literal["json", "text", "svg"] = "json",
) -> Any:
    """The task graph's run order, by levels of tasks that can run in parallel."""
    graph = _graph(runtime, folder, _folder(runtime, folder), None, None)
    shown = preview(graph)
    if format == "svg":
        return Response(shown.svg, media_type="image/svg+xml")
    if format == "text":
        return Response(shown.text, media_type="text/plain")
    return Preview(order=shown.order, levels=shown.levels, text=shown.text)


def _folder(runtime: Runtime, relative: str) -> Path:
    try:
        return runtime.task_graphs.folder(relative)
    except TaskGraphPathError as exc:
        raise HTTPException(404 if exc.missing else 422, str(exc)) from None


def _graph(
    runtime: Runtime,
    relative: str,
    folder: Path,
    compute: dict[str, Any] | None,
    tasks: list[dict[str, Any]] | None,
) -> TaskGraph:
    """The folder's task graph, validated; every file it reads is checked to be under the root."""
    root = runtime.task_graphs
    try:
        if compute is not None and tasks is not None:
            graph = TaskGraph.from_data(compute, tasks, folder)
        elif compute is None and tasks is None:
            for name in (*COMPUTE_FILES, *TASKS_FILES):  # the files from_folder would read
                if (folder / name).is_symlink() or (folder / name).exists():
                    root.file(relative, name)
            graph = TaskGraph.from_folder(folder)
        else:
            raise TaskGraphError(["send both compute and tasks, or neither (to use the folder's files)"])
        outside = []
        for task in graph.tasks:
            try:
                root.file(relative, task.file)
            except TaskGraphPathError as exc:
                if not exc.missing:  # a missing file is one of validate's problems
                    outside.append(f"task {task.name!r}: {exc}")
        if outside:
            raise TaskGraphError(outside)
        return validate(graph)
    except TaskGraphPathError as exc:
        raise HTTPException(422, {"message": "the task graph has problems", "problems": [str(exc)]}) from None
    except TaskGraphError as exc:
        raise HTTPException(422, {"message": "the task graph has problems", "problems": exc.problems}) from None
