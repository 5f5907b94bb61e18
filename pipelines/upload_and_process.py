"""Upload a file to a volume, run a job on it, optionally sync a vector index."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from app.durable import Context, pipeline
from steps.files import upload_to_volume
from steps.jobs import run_job
from steps.notify import notify
from steps.vector_search import sync_vector_index


@pipeline
def upload_and_process(
    ctx: Context,
    file: str,
    volume_path: str,
    job: str,
    params: dict[str, str] | None = None,
    index: str | None = None,
) -> Generator[Any, Any, Any]:
    """Upload a file to a UC volume, run a job on it that calls back, optionally sync an index.

    `file` is a path on the service's disk (POST /runs/upload_and_process saves uploads
    there), `volume_path` where it lands (/Volumes/<catalog>/<schema>/<volume>/<path>).
    The job's notebook gets `params` plus `file` = `volume_path`. `index`
    (<catalog>.<schema>.<index>) is synced once the notebook has called back, so it
    picks up what the job wrote.
    """
    uploaded = yield ctx.run(upload_to_volume, volume_path, local_path=file)
    done = ctx.promise()
    promise_id = yield done.id()
    notebook_params = {**(params or {}), "file": uploaded.path}
    run = yield ctx.run(run_job, job, notebook_params, callback_to=promise_id)
    yield ctx.watch(run, promise_id)  # fails `done` if the run ends without calling back
    value = yield done
    details: dict[str, Any] = {"run": run.url, "file": uploaded.path, "value": value}
    if index is not None:
        synced = yield ctx.run(sync_vector_index, index)
        details["index"] = synced.url
    yield ctx.run(notify, f"{job} processed {uploaded.path}: run {run.run_id}", details)
    return value
