"""Turn a folder of notebooks into a Databricks job, run it, and report on every task."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from databricks.sdk.service.jobs import JobSettings

from app.durable import Context, pipeline
from pipelines.job_callback import run_job_and_wait
from steps.jobs import upsert_job
from steps.workspace_files import upload_task_files


@pipeline(server_only="POST /jobs/deploy")
def deploy_and_run(
    ctx: Context,
    folder: str,
    files: dict[str, str],
    job: dict[str, Any],
    run: bool = True,
    callback: bool = False,
) -> Generator[Any, Any, dict[str, Any]]:
    """Upload a task graph's files, create or update its job, then run it and wait.

    Built by POST /jobs/deploy from a validated task graph, and started only by it:
    `folder` is relative to DARA_JOBS_ROOT, `files` maps each task file (relative to
    `folder`) to its workspace path under DARA_NOTEBOOK_DIR, and `job` is the job's
    settings. The upload step checks both again, so no path escapes either root. With
    `callback` (its notebooks have the DARA callback cell) the run's callback value is
    the result; otherwise the run's end is, with every task's outcome.
    """
    yield ctx.run(upload_task_files, folder, files)
    job_id = yield from ctx.run(upsert_job, JobSettings.from_dict(job))
    if not run:
        return {"job_id": job_id}
    # Without the callback cell in its notebooks, the run's end settles the wait.
    started, value = yield from run_job_and_wait(ctx, str(job_id), {}, callback=callback)
    if callback:
        return {"job_id": job_id, "url": started.url, "value": value}
    return {"job_id": job_id, "url": started.url, **value}
