"""Notes on a run that its promises have no place for, kept as promises of the run.

Some facts a run's view needs change while nothing in the run's own promises does: a
step refused for capacity is tried again and again (app.durable.capacity_waits), a
Databricks run that failed is held open for repair (app.repair_windows). Resonate is the
only store every worker shares on every backend, so those facts are promises too.

A promise cannot change once made, so a fact that changes is a series of notes,
``<owner>.<kind>-1``, ``-2``, ... (``<run>:<kind>-1`` when the owner is the run). A note
is made only after the one before it exists, so the numbers have no gaps, and the
newest is found by doubling and then bisecting: a series of thousands costs a reader a
couple of dozen reads, an owner without notes one. A pending note is current; its
writer settles it once it no longer holds, and its timeout bounds it when the writer
dies first, so a stale note cannot outlive the run.

Each note carries its run's ``resonate:origin``, so retention purges it with the run
(app.durable.run_index), and no ``resonate:branch``, so no task preloads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resonate.error import ServerError
from resonate.ids import join_id
from resonate.resonate import Resonate
from resonate.timing import now_ms
from resonate.types import PromiseRecord, Value

from app.durable.resonate_format import ORIGIN, PARENT, get_promise, run_of


@dataclass(frozen=True)
class Note:
    number: int
    record: PromiseRecord

    @property
    def data(self) -> Any:
        return self.record.param.data

    @property
    def current(self) -> bool:
        """Still holds: nobody settled it and its timeout has not passed (a backend may
        time a promise out a little late)."""
        return self.record.state == "pending" and self.record.timeout_at > now_ms()


def note_id(owner: str, kind: str, number: int) -> str:
    """The id of the ``number``-th (from 1) note of ``kind`` on ``owner`` (a run or one of its promises)."""
    return join_id(owner, f"{kind}-{number}")


async def newest(resonate: Resonate, owner: str, kind: str) -> Note | None:
    """The newest note of ``kind`` on ``owner``, or None if it has none."""
    first = await get_promise(resonate, note_id(owner, kind, 1))
    if first is None:
        return None
    found = Note(1, first)
    missing = 2
    while (record := await get_promise(resonate, note_id(owner, kind, missing))) is not None:
        found, missing = Note(missing, record), missing * 2
    while missing - found.number > 1:  # found exists, missing does not: bisect between
        middle = (found.number + missing) // 2
        record = await get_promise(resonate, note_id(owner, kind, middle))
        if record is None:
            missing = middle
        else:
            found = Note(middle, record)
    return found


async def add(resonate: Resonate, owner: str, kind: str, number: int, data: Any, until_ms: int) -> str:
    """Make note ``number`` of ``kind`` on ``owner``, current until ``until_ms`` at most;
    its id. Making one that exists returns it as it is (the first write wins)."""
    promise_id = note_id(owner, kind, number)
    tags = {ORIGIN: run_of(owner), PARENT: owner}
    await resonate.promises.create(promise_id, until_ms, Value(data=data), tags)
    return promise_id


async def close(resonate: Resonate, promise_id: str) -> None:
    """Settle a note that no longer holds; one already settled is left as it is."""
    record = await get_promise(resonate, promise_id)
    if record is not None and record.state == "pending":
        try:
            await resonate.promises.resolve(promise_id, Value(data=None))
        except ServerError as exc:
            if exc.code != 409:  # settled meanwhile, by its timeout or another writer
                raise
