"""Which wait each watched Databricks run settles: what a run event needs to check a run.

A Databricks job notification (app.services.run_events) names a run by its id and
nothing else DARA can trust. The run watcher (app.watchers) knows more: the run, the
promise its end settles, and whether a successful end resolves it. Each of its looks
notes that here, in this process, so that an event for the run can be checked through
the same code the watcher uses, with no lookup in Databricks or Resonate.

What a process holds is only what its own watchers looked at. A run watched on
another worker, or not yet looked at (its first look comes as it starts), is unknown
here: its event is acknowledged and left to the listing of active runs, the backstop.
An entry goes when its watch ends here, when an event finds its wait settled, or
when its run's deadline has passed (the watch cannot outlive it).
"""

from __future__ import annotations

from dataclasses import dataclass

from resonate.timing import now_ms

from steps.jobs import JobRun

#: Entries added between two sweeps of those past their deadline.
_SWEEP_EVERY = 1024


@dataclass(frozen=True)
class WatchedRun:
    """A run a watcher of this process looked at, and the wait its end settles."""

    run: JobRun
    promise_id: str
    #: The end of a successful run resolves the wait (a job whose notebooks do not call back).
    settle: bool
    #: The run's deadline (epoch ms): its watch ends by then.
    deadline_ms: int


class WatchedRuns:
    """The runs this process's watchers look at, by Databricks run id."""

    def __init__(self) -> None:
        self._runs: dict[int, WatchedRun] = {}
        self._added = 0

    def note(self, watched: WatchedRun) -> None:
        """A watcher looked at ``watched.run`` (every look notes it again)."""
        self._runs[watched.run.run_id] = watched
        self._added += 1
        if self._added % _SWEEP_EVERY == 0:
            now = now_ms()
            self._runs = {run_id: w for run_id, w in self._runs.items() if w.deadline_ms > now}

    def get(self, run_id: int) -> WatchedRun | None:
        return self._runs.get(run_id)

    def forget(self, run_id: int) -> None:
        """Its watch ended, or its wait was found settled."""
        self._runs.pop(run_id, None)

    def __len__(self) -> int:
        return len(self._runs)
