"""A fixed number of calls in any minute: how the backstop listing of active runs is paced.

With run events on (app.services.run_events), Databricks says when a run ended, and
the listing of active runs (app.active_runs) only catches the events that were lost.
Its cost must then not grow with the number of waiting runs, so it may make at most
``per_minute`` calls in any sixty seconds, and a listing of many runs simply takes
longer. A sliding window rather than a steady rate: a listing of a few pages still
completes at once, and no sixty seconds ever hold more than the budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

#: The window the budget is counted over, in seconds.
MINUTE = 60.0


class CallBudget:
    """At most ``per_minute`` calls in any minute of ``clock`` (seconds, monotonic)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        if per_minute < 1:
            msg = f"a call budget needs at least one call a minute, not {per_minute}"
            raise ValueError(msg)
        self.per_minute = per_minute
        #: Read on every take; the owner may swap it (tests move a clock by hand).
        self.clock = clock
        self._spent: deque[float] = deque()

    def take(self) -> bool:
        """Spend one call now if the budget allows it; False means "not before a call ages out"."""
        now = self.clock()
        while self._spent and now - self._spent[0] >= MINUTE:
            self._spent.popleft()
        if len(self._spent) >= self.per_minute:
            return False
        self._spent.append(now)
        return True
