"""Upload a file to a volume, run a job on it, optionally sync a vector index."""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated, Any

from pydantic import Field

from app.durable import Context, pipeline
from pipelines.job_callback import run_job_and_wait
from steps.notify import notify
from steps.uploaded_files import HANDLE_PATTERN, discard_upload, upload_saved_file
from steps.vector_search import sync_vector_index

#: An upload as POST /runs/upload_and_process hands it over: a handle, never a path.
UploadHandle = Annotated[
    str,
    Field(
        pattern=HANDLE_PATTERN,
        description="The handle POST /runs/upload_and_process issued for the file (not a path).",
    ),
]


@pipeline
def upload_and_process(
    ctx: Context,
    upload: UploadHandle,
    volume_path: str,
    job: str,
    params: dict[str, str] | None = None,
    index: str | None = None,
) -> Generator[Any, Any, Any]:
    """Upload a file to a UC volume, run a job on it that calls back, optionally sync an index.

    `upload` is the handle POST /runs/upload_and_process issued when it saved the file
    for this run, `volume_path` where it lands (/Volumes/<catalog>/<schema>/<volume>/<path>).
    The saved copy is discarded as soon as the volume has it (or the upload failed). The
    job's notebook gets `params` plus `file` = `volume_path`. `index`
    (<catalog>.<schema>.<index>) is synced once the notebook has called back, so it
    picks up what the job wrote.
    """
    try:
        uploaded = yield from ctx.run(upload_saved_file, upload, volume_path, ctx.run_id)
    except Exception:
        yield ctx.run(discard_upload, upload, ctx.run_id)  # no later step will take it
        raise
    yield ctx.run(discard_upload, upload, ctx.run_id)  # the volume has it: the step's record says so
    run, value = yield from run_job_and_wait(ctx, job, {**(params or {}), "file": uploaded.path})
    details: dict[str, Any] = {"run": run.url, "file": uploaded.path, "value": value}
    if index is not None:
        synced = yield from ctx.run(sync_vector_index, index)
        details["index"] = synced.url
    yield ctx.run(notify, f"{job} processed {uploaded.path}: run {run.run_id}", details)
    return value
