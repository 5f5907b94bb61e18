"""A validated task graph as the ``jobs.JobSettings`` the Jobs API takes.

The settings are built to compare equal to what the workspace returns for them, so
``steps.jobs.upsert_job`` can tell "unchanged" from "changed" and leave an unchanged
job alone: default values (no retries, no timeout, no parameters) are left out rather
than sent as zeros the API does not echo, and tasks, job clusters and environments are
sorted by key, the order the Jobs API returns them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from databricks.sdk.service import compute, jobs

from app.taskgraph.models import (
    ExistingCluster,
    NewCluster,
    Serverless,
    TaskGraph,
    TaskSpec,
    Warehouse,
)


def workspace_paths(graph: TaskGraph, workspace_dir: str) -> dict[str, str]:
    """Where each task file goes: file (as in the task list) -> workspace path.

    The folder's layout is kept under ``workspace_dir``, and file names keep their
    extension (the local emulator finds notebooks by their ``.py``).
    """
    base = PurePosixPath(workspace_dir)
    if not base.is_absolute():
        msg = f"workspace dir {workspace_dir!r} must be absolute, e.g. /Workspace/Shared/my-job"
        raise ValueError(msg)
    return {task.file: str(base / task.file) for task in graph.tasks}


def job_settings(
    graph: TaskGraph, name: str, paths: Mapping[str, str], *, max_concurrent_runs: int = 1
) -> jobs.JobSettings:
    """The job for ``graph``, with task files at ``paths`` (file -> workspace path).

    ``graph`` should have passed :func:`app.taskgraph.validate.validate`.
    """
    missing = sorted({task.file for task in graph.tasks} - set(paths))
    if missing:
        msg = f"no workspace path for {', '.join(missing)}; upload the task files first"
        raise KeyError(msg)
    tasks = [_task(task, graph, paths[task.file]) for task in graph.tasks]
    used = {task.compute for task in graph.tasks}
    clusters = [
        jobs.JobCluster(job_cluster_key=key, new_cluster=compute.ClusterSpec.from_dict(entry.cluster_spec()))
        for key, entry in sorted(graph.compute.items())
        if key in used and isinstance(entry, NewCluster)
    ]
    environments = [
        jobs.JobEnvironment(
            environment_key=key,
            spec=compute.Environment(
                environment_version=entry.serverless.environment_version,
                dependencies=list(entry.serverless.dependencies) or None,
            ),
        )
        for key, entry in sorted(graph.compute.items())
        if key in used and isinstance(entry, Serverless)
    ]
    return jobs.JobSettings(
        name=name,
        tasks=sorted(tasks, key=lambda task: task.task_key),
        job_clusters=clusters or None,
        environments=environments or None,
        max_concurrent_runs=max_concurrent_runs,
    )


def _task(spec: TaskSpec, graph: TaskGraph, path: str) -> jobs.Task:
    task = jobs.Task(
        task_key=spec.name,
        description=spec.description,
        depends_on=[jobs.TaskDependency(task_key=key) for key in sorted(set(spec.depends_on))] or None,
        max_retries=spec.retries or None,
        timeout_seconds=spec.timeout or None,
    )
    entry = graph.compute[spec.compute]
    if isinstance(entry, NewCluster):
        task.job_cluster_key = spec.compute
    elif isinstance(entry, ExistingCluster):
        task.existing_cluster_id = entry.existing_cluster_id
    elif isinstance(entry, Serverless):
        task.environment_key = spec.compute
        task.disable_auto_optimization = entry.disable_auto_optimization or None

    named = spec.parameters if isinstance(spec.parameters, dict) else {}
    if spec.format == "notebook":
        task.notebook_task = jobs.NotebookTask(notebook_path=path, base_parameters=named or None)
    elif spec.format == "python":
        task.spark_python_task = jobs.SparkPythonTask(python_file=path, parameters=spec.argv() or None)
    else:
        assert isinstance(entry, Warehouse), f"SQL task {spec.name!r} needs a warehouse"
        task.sql_task = jobs.SqlTask(
            warehouse_id=entry.warehouse_id,
            file=jobs.SqlTaskFile(path=path),
            parameters=named or None,
        )
    return task


#: What a notebook that calls DARA back contains (the DARA callback cell).
CALLBACK_MARKER = "dara_resolve("


def calls_back(graph: TaskGraph) -> bool:
    """Whether any task's notebook has the DARA callback cell, so a run should wait for it."""
    if graph.folder is None:
        return False
    for task in graph.tasks:
        path = graph.folder / task.file
        if path.is_file() and CALLBACK_MARKER in path.read_text(errors="replace"):
            return True
    return False
