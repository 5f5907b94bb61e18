"""Which Databricks runs are still going: one listing per interval, shared by every watcher.

A run watcher (app.watchers) only has to notice a run that ended without calling
back; the callback is the fast path. Asking Databricks about each waiting run costs
one ``runs/get`` per run per check, so the cost grew with the number of waiting runs.
Instead, this process lists the workspace's active runs (``runs/list?active_only``,
paged by databricks-sdk) at most once per interval and every watcher looks its run up
in that listing. Only a run missing from it is read on its own -- it ended, or started
after the listing -- so the Databricks calls per interval are the listing's pages plus
the runs that ended, whatever the number of runs that wait.

With run events on (app.services.run_events), Databricks says when a run ended, and
the listing only catches events that were lost: it is paced to a fixed number of calls
a minute (app.paced_listing), whatever the number of runs that wait. A run missing from
a listing is then read only if it was first looked up before that listing began: one
looked up since may have started after it, and waits for the next listing instead of
costing a call.

Each listed run is also offered to the sweep of orphaned runs (app.orphaned_runs): a
run started for a DARA run that ended before recording it is cancelled, for no call
but the cancel.

One instance per workspace client and process (the runtime registers it as a step
dependency). Watchers run on one event loop, so an asyncio lock is enough to make
concurrent lookups share a single listing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from app.call_budget import MINUTE, CallBudget
from app.orphaned_runs import OrphanSweep
from app.paced_listing import PacedListing

logger = logging.getLogger(__name__)

#: Runs per page of ``runs/list``: the most the Jobs API returns in one page.
PAGE_SIZE = 25
#: Runs remembered as ended (by a run event's read, or a watcher's), until a watcher
#: records how each ended; the oldest are forgotten past this many.
MAX_ENDED = 10_000


class ListedState(NamedTuple):
    """A run's state as a listing showed it: QUEUED, PENDING, RUNNING, ... and the workspace's message."""

    life_cycle_state: str
    message: str

    @classmethod
    def of(cls, state: jobs.RunState | None) -> ListedState:
        if state is None:
            return cls("", "")
        # queue_reason says why a QUEUED run waits ("Queued due to reaching maximum concurrent runs").
        message = state.queue_reason or state.state_message or ""
        return cls(state.life_cycle_state.value if state.life_cycle_state else "", message)


class ListingUnavailable(Exception):  # says what happened, as the SDK's errors do
    """The last listing failed less than an interval ago; no call is made until it is due.

    Not transient on purpose: a watcher step retrying it would only wait, and every
    watcher retrying its own listing would turn one outage into a call per watcher.
    """


class ActiveRuns:
    """The ids of a workspace's active runs, listed at most once per ``interval`` seconds."""

    def __init__(
        self,
        w: WorkspaceClient,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        calls_per_minute: int | None = None,
        orphans: OrphanSweep | None = None,
    ) -> None:
        self.w = w
        self.interval = interval
        #: When a listing is due is read from this clock; tests pass one they move by hand.
        self.clock = clock
        #: Offered every listed run: cancels those started for a DARA run that ended unrecorded.
        self.orphans = orphans
        #: With run events on, the listing paced to ``calls_per_minute``; None lists at once.
        self.paced = (
            PacedListing(
                w,
                CallBudget(calls_per_minute, lambda: self.clock()),
                PAGE_SIZE,
                on_page=orphans.offer if orphans is not None else None,
            )
            if calls_per_minute
            else None
        )
        #: Paced only: run -> when it was first and last looked up here.
        self._looked: dict[int, tuple[float, float]] = {}
        #: Runs read as ended, with how they ended (``FAILED``, ...).
        self._ended: dict[int, str] = {}
        #: Listings made so far (each is one call per page) and runs looked up in them;
        #: for tests and the benchmark.
        self.listings = self.lookups = 0
        self._ids: set[int] = set()
        #: Each listed run's state, for the run view.
        self._states: dict[int, ListedState] = {}
        self._taken_at: float | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = asyncio.Lock()

    async def is_active(self, run_id: int) -> bool:
        """Whether ``run_id`` was active when the workspace was last listed (listing it
        again first if that is an interval old). False means "ask about this run"."""
        self.lookups += 1
        if run_id in self._ended:
            return False
        if self.paced is not None:
            return await self._paced_lookup(run_id)
        return run_id in await self._current()

    async def _paced_lookup(self, run_id: int) -> bool:
        paced = self.paced
        assert paced is not None
        now = self.clock()
        first = self._looked.get(run_id, (now, now))[0]
        self._looked[run_id] = (first, now)
        await self._advance(paced, now)
        if run_id in self._ids or paced.shows(run_id):
            return True
        # Missing from the last complete listing: it ended -- unless it was first looked
        # up after that listing began, and may have started after it.
        return paced.began is None or paced.began <= first

    async def _advance(self, paced: PacedListing, now: float) -> None:
        """Read the pages the budget allows, and take a listing that completed as the current one."""
        async with self._lock:  # one page at a time, for every watcher
            before = paced.began
            if await paced.advance(now, self.interval):
                self._ids, self._taken_at = set(paced.runs), paced.began
                self._states = {run: ListedState.of(state) for run, state in paced.runs.items()}
                self.listings += 1
                if before is not None:  # nobody here looked them up for a whole listing: watched elsewhere, or done
                    self._looked = {run: seen for run, seen in self._looked.items() if seen[1] >= before}

    async def keep_listing(self) -> None:
        """Paced only (the runtime runs it): read pages between the watchers' looks too.

        Runs started together look together, an interval apart, and a budget counted over
        any minute lets a burst of looks spend only half of it. Reading a page whenever a
        call's worth of budget has come spends it all, so a listing takes as long as its
        pages need at the budget. Nothing is read while no watcher here looks up a run.
        """
        paced = self.paced
        assert paced is not None
        while True:
            await asyncio.sleep(MINUTE / paced.budget.per_minute)
            if self._looked:
                try:
                    await self._advance(paced, self.clock())
                except Exception:  # a bug, not Databricks (paced.advance logs its failures): keep the backstop
                    logger.exception("the paced listing of active runs failed to advance")

    def saw_ended(self, run_id: int, state: str) -> None:
        """``run_id`` was read and has ended as ``state``: a listing (up to an interval old,
        or far older when paced) must no longer say it is active."""
        self._ids.discard(run_id)
        self._looked.pop(run_id, None)
        self._ended[run_id] = state
        while len(self._ended) > MAX_ENDED:
            del self._ended[next(iter(self._ended))]

    def ended_as(self, run_id: int) -> str | None:
        """How ``run_id`` ended, if it was read as ended here; forgotten once asked."""
        return self._ended.pop(run_id, None)

    def listed_state(self, run_id: int) -> ListedState | None:
        """``run_id``'s state in this process's last listing, if that is at most
        two intervals old (the watchers list once an interval) and shows it; else None.
        Never lists: reading a run must not cost Databricks a call (``GET /runs/{id}``)."""
        if self._taken_at is None or self.clock() - self._taken_at > 2 * self.interval:
            return None
        return self._states.get(run_id)

    def saw_active(self, run_id: int) -> None:
        """``run_id`` was read on its own and is active: no need to read it again before
        the next listing (a run started after the listing is missing from it)."""
        self._ended.pop(run_id, None)  # a repair runs it again
        self._ids.add(run_id)

    async def _current(self) -> set[int]:
        async with self._lock:  # a lookup during a listing waits for it instead of listing too
            now = self.clock()
            if self._taken_at is not None and now - self._taken_at < self.interval:
                return self._ids
            if self._failed_at is not None and now - self._failed_at < self.interval:
                raise ListingUnavailable(self._failure)
            try:
                runs = await asyncio.to_thread(self._list)
            except Exception as exc:
                self._failed_at = now
                self._failure = f"listing the active runs of {self.w.config.host} failed: {type(exc).__name__}: {exc}"
                raise ListingUnavailable(self._failure) from exc
            if self.orphans is not None:
                self.orphans.offer(runs)
            states = {run.run_id: ListedState.of(run.state) for run in runs if run.run_id is not None}
            # Stamped with the time the listing started: a run started while it was
            # being paged through may be missing, and is then read on its own.
            self._ids, self._states, self._taken_at, self._failed_at = set(states), states, now, None
            self.listings += 1
            return self._ids

    def _list(self) -> list[jobs.BaseRun]:
        return list(self.w.jobs.list_runs(active_only=True, limit=PAGE_SIZE))
