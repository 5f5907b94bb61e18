"""Jobs from a task graph: a compute config and a task list, as code.

Load (:class:`TaskGraph`), check everything at once (:func:`validate`), see the run
order (:func:`preview`), and build the ``jobs.JobSettings`` to upsert
(:func:`workspace_paths` + :func:`job_settings`). Uploading the files and upserting
the job are steps (``steps.workspace_files``, ``steps.jobs``), so a pipeline wires them.
"""

from app.taskgraph.models import (
    ExistingCluster,
    NewCluster,
    Serverless,
    TaskGraph,
    TaskSpec,
    Warehouse,
    load_document,
    parse_compute,
    parse_tasks,
    read_document,
)
from app.taskgraph.preview import GraphPreview, levels, order, preview, render_svg, render_text
from app.taskgraph.spec import calls_back, job_settings, workspace_paths
from app.taskgraph.validate import TaskGraphError, find_problems, validate

__all__ = [
    "ExistingCluster",
    "GraphPreview",
    "NewCluster",
    "Serverless",
    "TaskGraph",
    "TaskGraphError",
    "TaskSpec",
    "Warehouse",
    "calls_back",
    "find_problems",
    "job_settings",
    "levels",
    "load_document",
    "order",
    "parse_compute",
    "parse_tasks",
    "preview",
    "read_document",
    "render_svg",
    "render_text",
    "validate",
    "workspace_paths",
]
