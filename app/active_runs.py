"""Which Databricks runs are still going: one listing per interval, shared by every watcher.

A run watcher (app.watchers) only has to notice a run that ended without calling
back; the callback is the fast path. Asking Databricks about each waiting run costs
one ``runs/get`` per run per check, so the cost grew with the number of waiting runs.
Instead, this process lists the workspace's active runs (``runs/list?active_only``,
paged by databricks-sdk) at most once per interval and every watcher looks its run up
in that listing. Only a run missing from it is read on its own -- it ended, or started
after the listing -- so the Databricks calls per interval are the listing's pages plus
the runs that ended, whatever the number of runs that wait.

One instance per workspace client and process (the runtime registers it as a step
dependency). Watchers run on one event loop, so an asyncio lock is enough to make
concurrent lookups share a single listing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from databricks.sdk import WorkspaceClient

#: Runs per page of ``runs/list``: the most the Jobs API returns in one page.
PAGE_SIZE = 25


class ListingUnavailable(Exception):  # says what happened, as the SDK's errors do
    """The last listing failed less than an interval ago; no call is made until it is due.

    Not transient on purpose: a watcher step retrying it would only wait, and every
    watcher retrying its own listing would turn one outage into a call per watcher.
    """


class ActiveRuns:
    """The ids of a workspace's active runs, listed at most once per ``interval`` seconds."""

    def __init__(self, w: WorkspaceClient, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.w = w
        self.interval = interval
        #: When a listing is due is read from this clock; tests pass one they move by hand.
        self.clock = clock
        #: Listings made so far (each is one call per page) and runs looked up in them;
        #: for tests and the benchmark.
        self.listings = self.lookups = 0
        self._ids: set[int] = set()
        self._taken_at: float | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = asyncio.Lock()

    async def is_active(self, run_id: int) -> bool:
        """Whether ``run_id`` was active when the workspace was last listed (listing it
        again first if that is an interval old). False means "ask about this run"."""
        self.lookups += 1
        return run_id in await self._current()

    def saw_active(self, run_id: int) -> None:
        """``run_id`` was read on its own and is active: no need to read it again before
        the next listing (a run started after the listing is missing from it)."""
        self._ids.add(run_id)

    async def _current(self) -> set[int]:
        async with self._lock:  # a lookup during a listing waits for it instead of listing too
            now = self.clock()
            if self._taken_at is not None and now - self._taken_at < self.interval:
                return self._ids
            if self._failed_at is not None and now - self._failed_at < self.interval:
                raise ListingUnavailable(self._failure)
            try:
                ids = await asyncio.to_thread(self._list)
            except Exception as exc:
                self._failed_at = now
                self._failure = f"listing the active runs of {self.w.config.host} failed: {type(exc).__name__}: {exc}"
                raise ListingUnavailable(self._failure) from exc
            # Stamped with the time the listing started: a run started while it was
            # being paged through may be missing, and is then read on its own.
            self._ids, self._taken_at, self._failed_at = ids, now, None
            self.listings += 1
            return self._ids

    def _list(self) -> set[int]:
        runs = self.w.jobs.list_runs(active_only=True, limit=PAGE_SIZE)
        return {run.run_id for run in runs if run.run_id is not None}
