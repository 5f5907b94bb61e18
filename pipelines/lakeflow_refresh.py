"""Refresh a Lakeflow pipeline, wait for the update durably, then run a job on its tables."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from app.durable import Context, pipeline
from pipelines.job_callback import run_job_and_wait
from steps.lakeflow import pipeline_update_state, start_pipeline_update
from steps.notify import notify

#: Seconds between checks of the update: quick at first, then once a minute.
BACKOFF: tuple[float, ...] = (5, 10, 20, 30, 60)


class UpdateFailed(Exception):
    """The Lakeflow update ended without completing, so its tables are not fresh."""


@pipeline
def lakeflow_refresh(
    ctx: Context,
    pipeline_id: str,
    job: str,
    full_refresh: bool = False,
) -> Generator[Any, Any, Any]:
    """Run a Lakeflow pipeline update, wait for it, then run a job that calls back, notify.

    The update is polled between durable sleeps, so a restart costs one poll, not the
    wait. A failed or canceled update fails the run with the update's error, and the
    job does not run on stale tables.
    """
    update = yield from ctx.run(start_pipeline_update, pipeline_id, full_refresh)
    polls = 0
    while True:
        yield ctx.sleep(timedelta(seconds=BACKOFF[min(polls, len(BACKOFF) - 1)]))
        state = yield from ctx.run(pipeline_update_state, pipeline_id, update.update_id)
        if state.terminal:
            break
        polls += 1
    if state.state != "COMPLETED":
        msg = f"Lakeflow update {update.update_id} ended {state.state}: {state.message}"
        raise UpdateFailed(f"{msg}; see {update.url}")
    tables = {"pipeline_id": pipeline_id, "update_id": update.update_id}
    run, value = yield from run_job_and_wait(ctx, job, tables)
    details = {"update": update.url, "run": run.url, "value": value}
    message = f"{job} finished after update {update.update_id}: run {run.run_id}"
    yield ctx.run(notify, message, details)
    return value
