"""Start a notebook job, wait for the notebook to call back, notify."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from app.durable import Context, pipeline
from app.durable.params import CallbackUrl
from pipelines.job_callback import run_job_and_wait
from steps.notify import notify


@pipeline
def notebook_job(
    ctx: Context,
    job: str,
    params: dict[str, str] | None = None,
    url: CallbackUrl | None = None,
) -> Generator[Any, Any, Any]:
    """Run a job whose notebook calls back with its result, then notify.

    `job` is a job name or id, `params` its notebook parameters, and `url` the base URL
    the notebook calls back (default: DARA_PUBLIC_URL; else one of DARA_CALLBACK_URLS).
    """
    run, value = yield from run_job_and_wait(ctx, job, params or {}, url=url)
    yield ctx.run(notify, f"{job} finished: run {run.run_id}", {"run": run.url, "value": value})
    return value
