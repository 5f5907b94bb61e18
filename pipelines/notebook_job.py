"""Start a notebook job, wait for the notebook to call back, notify."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from app.durable import Context, pipeline
from app.durable.params import CallbackUrl
from steps.jobs import run_job
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
    done = ctx.promise()
    promise_id = yield done.id()
    run = yield ctx.run(run_job, job, params or {}, callback_to=promise_id, callback_url=url)
    yield ctx.watch(run, promise_id)  # fails `done` if the run ends without calling back
    value = yield done
    yield ctx.run(notify, f"{job} finished: run {run.run_id}", {"run": run.url, "value": value})
    return value
