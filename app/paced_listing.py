"""The listing of a workspace's active runs a page at a time, within a call budget.

With run events on (app.services.run_events), Databricks says when a run ended and
the listing of active runs (app.active_runs) is only the backstop for events that
were lost. Listing every active run once an interval would cost a call per 25 runs,
so the listing is paced instead: each page is one call, made only when the budget
(app.call_budget) allows it, and a listing of many runs takes as many minutes as it
needs. Its cost stays the budget, whatever the number of runs that wait.

Pages are read one call each (``runs/list`` with ``page_token``, parsed into
databricks-sdk's ``ListRunsResponse``) rather than through the SDK's iterator, which
fetches the next page whenever it is asked for one more run: a page is the unit the
budget counts. A failed page starts the listing over, when the budget next allows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from app.call_budget import CallBudget

logger = logging.getLogger(__name__)

LIST_RUNS = "/api/2.2/jobs/runs/list"


@dataclass
class _Listing:
    """A listing under way: where it began, where it is, what it found so far."""

    began: float
    token: str | None = None
    runs: dict[int, jobs.RunState | None] = field(default_factory=dict)


class PacedListing:
    """The last complete listing of active runs, and the one under way, paced by ``budget``."""

    def __init__(
        self,
        w: WorkspaceClient,
        budget: CallBudget,
        page_size: int,
        on_page: Callable[[list[jobs.BaseRun]], None] | None = None,
    ) -> None:
        self.w = w
        self.budget = budget
        self.page_size = page_size
        #: Given each page's runs as it arrives (the sweep of orphaned runs, app.orphaned_runs).
        self.on_page = on_page
        #: Pages read so far (one call each); for tests and the benchmark.
        self.pages = 0
        #: Each run of the last complete listing, with its state then.
        self.runs: dict[int, jobs.RunState | None] = {}
        #: When the last complete listing began (None: none has completed yet).
        self.began: float | None = None
        self._under_way: _Listing | None = None

    def shows(self, run_id: int) -> bool:
        """Whether the listing under way has already seen ``run_id`` (so it is active)."""
        return self._under_way is not None and run_id in self._under_way.runs

    async def advance(self, now: float, interval: float) -> bool:
        """Read the pages the budget allows now, beginning a listing if one is due (an
        interval after the last began); True if a listing completed."""
        if self._under_way is None and (self.began is None or now - self.began >= interval):
            self._under_way = _Listing(began=now)
        completed = False
        while (listing := self._under_way) is not None and self.budget.take():
            try:
                runs, listing.token = await asyncio.to_thread(self._page, listing.token)
            except Exception as exc:  # noqa: BLE001 -- the backstop tries again, within its budget
                self._under_way = None
                logger.warning(
                    "listing the active runs of %s failed; the backstop lists them again from the start: %s: %s",
                    self.w.config.host,
                    type(exc).__name__,
                    exc,
                )
                break
            self.pages += 1
            listing.runs.update({run.run_id: run.state for run in runs if run.run_id is not None})
            if self.on_page is not None:
                self.on_page(runs)
            if listing.token is None:
                # Dated by when it began: a run started while it was paged through may be missing.
                self.runs, self.began, self._under_way = listing.runs, listing.began, None
                completed = True
        return completed

    def _page(self, token: str | None) -> tuple[list[jobs.BaseRun], str | None]:
        """One page of active runs and the token of the next (None after the last): one call."""
        query: dict[str, object] = {"active_only": "true", "limit": self.page_size}
        if token:
            query["page_token"] = token
        body = self.w.api_client.do("GET", LIST_RUNS, query=query, headers={"Accept": "application/json"})
        page = jobs.ListRunsResponse.from_dict(body)  # type: ignore[arg-type]
        return page.runs or [], page.next_page_token or None
