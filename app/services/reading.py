"""Where runs are read for a caller: one run (waiting for its end if asked), or a page of them.

How a run's status is worked out from its promises is app.services.run_status's.
"""

from __future__ import annotations

import asyncio

from app.runtime import Runtime
from app.services.errors import BadCursor, RunNotFound
from app.services.run_status import RunListItem, RunPage, RunStatus, RunView, add_listed_states, read_run


async def get_run(runtime: Runtime, run_id: str, *, wait: float) -> RunView:
    """The run ``run_id`` with its steps; with ``wait``, after up to that many seconds for
    it to finish. Raises RunNotFound."""
    host = runtime.workspace_host
    run = await read_run(runtime.resonate, run_id, workspace_host=host)
    if run is None:
        raise RunNotFound(run_id)
    if wait and run.status in ("running", "waiting"):
        handle = await runtime.resonate.get(run_id)
        # Until the run ends, ``wait`` runs out, or the service begins to stop: the
        # caller then gets the run as it is and asks again (of the next process).
        ended = asyncio.ensure_future(handle.result())
        draining = asyncio.ensure_future(runtime.draining.wait())
        try:
            await asyncio.wait((ended, draining), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (ended, draining):
                waiting.cancel()
            # The outcome is read back below either way.
            await asyncio.gather(ended, draining, return_exceptions=True)
        run = await read_run(runtime.resonate, run_id, workspace_host=host)
        assert run is not None
    # What the workspace holds queued, from the listing the run watchers make: no call of its own.
    add_listed_states(run, runtime.active_runs.listed_state)
    return run


async def list_runs(
    runtime: Runtime,
    *,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: int,
    cursor: str | None = None,
) -> RunPage:
    """Runs, newest first, filtered by pipeline and status, a page at a time, as summaries.

    The backend's run index (app.durable.run_index) lists root promises; only those
    that carry a pipeline call are runs. Raises BadCursor for a cursor it did not issue.
    """

    def wanted(run: RunView | None) -> bool:
        return run is not None and pipeline in (None, run.pipeline) and status in (None, run.status)

    runs: list[RunListItem] = []
    position = cursor
    while True:
        try:
            ids, position = await runtime.run_index.page(position, limit - len(runs))  # never more than asked
        except ValueError as exc:
            raise BadCursor(str(exc)) from None
        for run_id in ids:
            # The steps are read for the progress counts (and the status: "waiting"); a
            # summary has no links, so no workspace host.
            if wanted(run := await read_run(runtime.resonate, run_id)):
                runs.append(RunListItem.of(run))  # type: ignore[arg-type]
        if len(runs) >= limit or position is None:
            return RunPage(runs=runs, next_cursor=position)
