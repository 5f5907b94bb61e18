"""A step that waits for room in the workspace, noted where every worker reads the run.

While the step runner waits out a capacity refusal (a full run queue, a 429,
RESOURCE_EXHAUSTED; app.durable.retries), the step's promise stays pending as for any
running step. The run is queued, not working, and ``GET /runs/{id}`` should say so on
whichever worker answers it. So each refusal is a run note (app.durable.run_notes) on
the step's promise, ``<step>.capacity-<n>``: the workspace's message, the refusals so
far, since when, and when the next try is. Each note is settled when the next one is
made, and the last when the step gets in or fails, so the newest note of a pending step
is pending exactly while the step waits for room.

A worker that takes over a step after a crash continues the count. If it gets in at
once, the note the dead worker left stays current until the step ends (or its deadline):
for that short while the run reads as queued although it is not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resonate.resonate import Resonate

from app.durable import run_notes

logger = logging.getLogger(__name__)

KIND = "capacity"
#: The longest workspace message a note keeps: a reason, not a log.
REASON_CHARS = 500


@dataclass(frozen=True)
class CapacityWait:
    """A step's wait for room, as its newest note says."""

    step: str
    #: The workspace's message, e.g. "the local queue limit of 8 waiting runs is reached".
    reason: str
    #: Tries refused so far.
    attempts: int
    #: When the first was refused, and when the next try is (epoch ms).
    since_ms: int
    next_attempt_ms: int

    def as_data(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "reason": self.reason,
            "attempts": self.attempts,
            "since": self.since_ms,
            "next_attempt": self.next_attempt_ms,
        }

    @classmethod
    def of(cls, data: Any) -> CapacityWait | None:
        """Read back from a note; None for anything not shaped as one."""
        if not isinstance(data, dict):
            return None
        step, reason = data.get("step"), data.get("reason")
        attempts, since, next_attempt = data.get("attempts"), data.get("since"), data.get("next_attempt")
        if not (isinstance(step, str) and isinstance(reason, str)):
            return None
        if not all(type(n) is int and n >= 0 for n in (attempts, since, next_attempt)):
            return None
        return cls(step, reason[:REASON_CHARS], attempts, since, next_attempt)  # type: ignore[arg-type]


async def current(resonate: Resonate, step_id: str) -> CapacityWait | None:
    """The wait for room of the step ``step_id``, while it lasts; None otherwise."""
    note = await run_notes.newest(resonate, step_id, KIND)
    return CapacityWait.of(note.data) if note is not None and note.current else None


class CapacityLog:
    """Notes one execution of a step's waits for room, as they happen (the step runner's).

    Never raises: a note that cannot be made is logged, and the step goes on waiting.
    """

    def __init__(
        self, resonate: Resonate, step_id: str, step: str, deadline_ms: int, clock: Callable[[], float]
    ) -> None:
        self._resonate = resonate
        self._step_id = step_id
        self._step = step
        self._deadline_ms = deadline_ms
        self._clock = clock
        #: The number of the newest note, once known; its id while it is ours to settle.
        self._number: int | None = None
        self._since_ms = 0
        self._open: str | None = None

    async def refused(self, exc: BaseException, delay: float) -> None:
        """The workspace refused the step for capacity; it is tried again in ``delay`` seconds."""
        try:
            now = round(self._clock() * 1000)
            if self._number is None:  # this execution's first refusal: go on from an earlier one's
                earlier = await run_notes.newest(self._resonate, self._step_id, KIND)
                wait = CapacityWait.of(earlier.data) if earlier is not None else None
                self._number = earlier.number if earlier is not None else 0
                self._since_ms = wait.since_ms if wait is not None else now
                self._open = earlier.record.id if earlier is not None and earlier.current else None
            self._number += 1
            wait = CapacityWait(
                self._step, str(exc)[:REASON_CHARS], self._number, self._since_ms, now + round(delay * 1000)
            )
            noted = await run_notes.add(
                self._resonate, self._step_id, KIND, self._number, wait.as_data(), self._deadline_ms
            )
            previous, self._open = self._open, noted
            if previous is not None:
                await run_notes.close(self._resonate, previous)
        except Exception as problem:  # noqa: BLE001 -- a note is for the view; the wait goes on without it
            logger.warning("could not note that step %s waits for capacity: %s", self._step_id, problem)

    async def over(self) -> None:
        """The step got in, or failed: it no longer waits for room."""
        if self._open is None:
            return
        try:
            await run_notes.close(self._resonate, self._open)
        except Exception as exc:  # noqa: BLE001 -- the note's timeout (the step's deadline) ends it instead
            logger.warning("could not note that step %s no longer waits for capacity: %s", self._step_id, exc)
        self._open = None
