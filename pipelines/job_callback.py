"""Run a Databricks job and wait for it: the motif every pipeline that runs a job shares.

Four durable operations, in the one order that works, which is why they are one helper:

1. the wait is created, and its id awaited -- the promise exists before anyone can
   settle it, so a notebook that calls back at once finds it;
2. the job is started with that id (``callback_to``), so its notebook knows what to settle;
3. the run watcher starts once the run exists, since it watches that run and fails the
   wait if the run ends without calling back (``Context.watch`` refuses a promise that
   is not a wait of this run);
4. the pipeline waits.

A job whose notebooks do not call back (``callback=False``) is started without one, and
its run's end settles the wait instead: resolved with each task's result on success.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from app.durable import Context
from steps.jobs import JobRun, run_job


def run_job_and_wait(
    ctx: Context,
    job: str,
    params: dict[str, str],
    *,
    callback: bool = True,
    url: str | None = None,
    timeout: timedelta | None = None,
) -> Generator[Any, Any, tuple[JobRun, Any]]:
    """Start ``job`` with notebook parameters ``params`` and wait for it; returns the run
    and the value its notebook called back with (``callback=False``: the run's report).

    Use as ``run, value = yield from run_job_and_wait(ctx, job, params)``. ``url`` is the
    base URL the notebook calls back (default: DARA_PUBLIC_URL), ``timeout`` the wait's
    deadline (default: the pipeline's, else DARA_CALLBACK_TIMEOUT).
    """
    done = ctx.promise(timeout)
    promise_id: str = yield done.id()  # id() is a coroutine: no ``yield from``, so say its type
    if callback:
        run = yield from ctx.run(run_job, job, params, callback_to=promise_id, callback_url=url)
    else:
        run = yield from ctx.run(run_job, job, params)
    yield ctx.watch(run, promise_id, settle=not callback)
    return run, (yield done)
