"""What a job task or a Lakeflow pipeline refers to in the workspace: the notebook or
file it runs and its library files. Read by the workspace browser and the export steps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from databricks.sdk.service import jobs, pipelines


def task_target(task: jobs.Task) -> tuple[str, str | None]:
    """(kind, what it runs) of a job task."""
    if task.notebook_task:
        return "notebook", task.notebook_task.notebook_path
    if task.spark_python_task:
        return "python file", task.spark_python_task.python_file
    if task.python_wheel_task:
        return "python wheel", f"{task.python_wheel_task.package_name}:{task.python_wheel_task.entry_point}"
    if task.sql_task:
        file = task.sql_task.file.path if task.sql_task.file else None
        return "sql", file
    if task.pipeline_task:
        return "pipeline", task.pipeline_task.pipeline_id
    if task.run_job_task:
        return "job", str(task.run_job_task.job_id)
    return "other", None


def library_paths(libraries: Iterable[Any]) -> list[str]:
    """Paths of a task's libraries (wheels, jars, requirements files), where they are files."""
    found = []
    for library in libraries:
        for attribute in ("whl", "jar", "egg", "requirements"):
            value = getattr(library, attribute, None)
            if isinstance(value, str):
                found.append(value)
    return found


def pipeline_library_path(library: pipelines.PipelineLibrary) -> str | None:
    if library.notebook and library.notebook.path:
        return library.notebook.path
    if library.file and library.file.path:
        return library.file.path
    if library.glob and library.glob.include:
        return library.glob.include
    return None
