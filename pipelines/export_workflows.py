"""Export the jobs and Lakeflow pipelines an export config selects, one durable step each.

There is no export state of its own: the run is its state. Each item's export is a
step whose result Resonate records, so on a durable backend a restart -- or a worker
taking the run over -- replays the items already exported at once and carries on with
the next; ``GET /exports/{id}`` (and the console's export page) reads progress, item
times and estimates from those same steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

from app.durable import Context, pipeline
from app.durable.errors import StepError
from steps.export import ExportedItem, export_job, export_pipeline
from steps.export_models import ExportPipeline, ExportWorkflow, InitialVariables

#: The steps that export one item each; progress counts them.
ITEM_STEPS = ("export_job", "export_pipeline")


@pipeline
def export_workflows(
    ctx: Context,
    initial_variables: InitialVariables,
    workflows: list[ExportWorkflow] | None = None,
    pipelines: list[ExportPipeline] | None = None,
) -> Generator[Any, Any, dict[str, Any]]:
    """Export each active job and pipeline of an export config (config.yml) under
    ``initial_variables.v_start_path``: definition JSON, bundle resource YAML and, with
    ``export_libraries``, notebooks and library files. An item that fails is reported
    and the others still run."""
    root = initial_variables.v_start_path
    exported: list[ExportedItem] = []
    failed: list[dict[str, str]] = []
    for job in [w for w in workflows or [] if w.is_active]:
        try:
            exported.append((yield from ctx.run(export_job, job.job_id, job.export_libraries, root)))
        except StepError as exc:
            failed.append({"kind": "job", "id": str(job.job_id), "name": job.job_name, "error": str(exc)})
    for item in [p for p in pipelines or [] if p.is_active]:
        try:
            exported.append((yield from ctx.run(export_pipeline, item.pipeline_id, item.export_libraries, root)))
        except StepError as exc:
            failed.append({"kind": "pipeline", "id": item.pipeline_id, "name": item.pipeline_name, "error": str(exc)})
    return {"start_path": root, "exported": [dataclasses.asdict(item) for item in exported], "failed": failed}
