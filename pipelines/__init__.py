"""DARA's pipelines, one module each, and the list of those the service runs.

A pipeline exists for the service once it is listed in :data:`PIPELINES`: declaring one
(``@pipeline``) registers nothing. The service registers this list with Resonate
(app.wiring) and lists it under ``GET /pipelines``. Modules that are not pipelines hold
what several share (``job_callback``).
"""

from __future__ import annotations

from app.durable import Pipeline

# The modules, not their pipelines, are imported by name here: ``pipelines.notebook_job``
# stays the module (tests patch names in it), its pipeline is ``notebook_job.notebook_job``.
from pipelines import (
    deploy_and_run,
    export_workflows,
    lakeflow_refresh,
    notebook_job,
    sql_then_job,
    upload_and_process,
)

#: Every pipeline the service runs. A new pipeline is added here.
PIPELINES: tuple[Pipeline, ...] = (
    notebook_job.notebook_job,
    upload_and_process.upload_and_process,
    sql_then_job.sql_then_job,
    lakeflow_refresh.lakeflow_refresh,
    deploy_and_run.deploy_and_run,
    export_workflows.export_workflows,
)
