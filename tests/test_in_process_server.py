"""DARA's in-process server answers as the SDK's does, from indexes instead of scans.

The server under test checks itself: each indexed ``preload`` is compared with the
SDK's scan over the same table, each task fulfilled is checked to be no promise's
awaiter any more, which is what the SDK's scan in ``enqueue_settle`` ensures, and each
sweep's due timeouts, found from a heap, are compared with a walk of the whole table. A mixed
workload then runs through it: steps, waits resolved, rejected and timed out, detached
watchdogs with durable sleeps, a failing pipeline, and a run ended from outside while
it waits (as ``POST /runs/{id}/cancel`` ends one).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any

import pytest
from resonate.connections.local import PTimeout, ServerState
from resonate.resonate import Resonate
from resonate.retry import Never
from resonate.types import Value

from app.durable import Context, StepDependencies, WaitDefaults, drive
from app.durable.in_process import IndexedServerState, InProcessServer, _Timeouts
from app.wiring import wire

pytestmark = pytest.mark.anyio


class CheckedState(IndexedServerState):
    """Every indexed answer compared with the scan it replaces."""

    def __init__(self) -> None:
        super().__init__()
        self.preloads = 0
        self.fulfilled = 0
        self.swept_due = 0

    def tick(self, now: int) -> None:
        for table in (self.p_timeouts, self.t_timeouts):
            table.now = now
            due = [entry.id for entry in table]
            table.now = None
            assert sorted(due) == sorted(e.id for e in table.values() if now >= e.timeout), now
            self.swept_due += len(due)
        super().tick(now)

    def preload(self, promise_id: str) -> list[dict[str, Any]]:
        indexed = super().preload(promise_id)
        assert indexed == ServerState.preload(self, promise_id), promise_id
        self.preloads += 1
        return indexed

    def enqueue_settle(self, promise_id: str) -> None:
        super().enqueue_settle(promise_id)
        task = self.tasks.get(promise_id)
        if task is not None and task.state == "fulfilled":
            assert not [p.id for p in self.promises.values() if promise_id in p.awaiters]
            self.fulfilled += 1


def double(x: int) -> int:
    return 2 * x


def fails() -> int:
    raise ValueError("no")


def waits(ctx: Context, x: int, seconds: float) -> Generator[Any, Any, Any]:
    y = yield ctx.run(double, x)
    try:
        value = yield ctx.promise(timedelta(seconds=seconds))
    except Exception as exc:  # noqa: BLE001 -- what ended the wait is the result
        value = str(exc).split(" nothing")[0]
    z = yield ctx.run(double, y)
    return [y, value, z]


def fails_while_waiting(ctx: Context) -> Generator[Any, Any, Any]:
    ctx.promise()
    yield ctx.run(fails)


@pytest.mark.parametrize("backend_times_out", [True, False], ids=["server-times-out", "watchdogs"])
async def test_the_indexed_server_answers_as_the_sdks_scans_do(backend_times_out: bool) -> None:
    server = InProcessServer(group="dara", tick_interval=0.1)
    server.state = state = CheckedState()
    resonate = Resonate(network=server, retry_policy=Never())
    resonate.with_dependency(WaitDefaults(backend_times_out=backend_times_out))
    wire(resonate, [], StepDependencies())
    resonate.register(drive(waits), name="waits")
    resonate.register(drive(fails_while_waiting), name="fails_while_waiting")
    try:
        handles = {f"w{i}": resonate.run(f"w{i}", "waits", i, 1 if i % 4 == 3 else 60) for i in range(12)}
        failing = resonate.run("f", "fails_while_waiting")
        cancelled = resonate.run("c", "waits", 0, 60)
        await until_created(state, "c:2")
        await until(lambda: state.tasks["c"].state == "suspended")
        await resonate.promises.reject("c", Value(data={"__type": "error", "message": "cancelled"}))
        for i in range(12):
            if i % 4 != 3:
                await until_created(state, f"w{i}:2")
                settle = resonate.promises.resolve if i % 2 == 0 else resonate.promises.reject
                await settle(f"w{i}:2", Value(data=i))
        async with asyncio.timeout(30):  # a sweep that missed a deadline would leave a wait hanging
            results = {run_id: await handle.result() for run_id, handle in handles.items()}
        with pytest.raises(Exception, match="no"):
            await failing.result()
        with pytest.raises(Exception, match="cancelled"):
            await cancelled.result()
    finally:
        await resonate.stop()

    expected = {}
    for i in range(12):
        value = "timed out:" if i % 4 == 3 else i if i % 2 == 0 else f"unknown error: {i}"
        expected[f"w{i}"] = [2 * i, value, 4 * i]
    assert results == expected
    assert state.preloads > 0 and state.fulfilled >= 14 and state.swept_due >= 3
    assert state.promises["c:2"].state == "pending" and not state.promises["c:2"].awaiters
    if backend_times_out:  # only the wait nobody settled still has a deadline to keep
        assert set(state.p_timeouts.keys()) == {"c:2"}


async def until_created(state: ServerState, promise_id: str) -> None:
    await until(lambda: promise_id in state.promises)


async def until(condition: Callable[[], bool]) -> None:
    """The server has no event for these, so look each time the loop comes round."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0)


def test_the_deadline_heap_finds_what_a_walk_of_the_table_finds() -> None:
    """Deadlines added, moved earlier and later, and deleted in a seeded random order;
    at each sweep the heap's due entries are the table's, and its garbage stays bounded."""
    rng = random.Random(5)
    table = _Timeouts()
    for now in range(0, 5000, 10):
        for _ in range(rng.randint(0, 6)):
            key = f"p{rng.randint(0, 40)}"
            if rng.random() < 0.3:
                table.pop(key, None)
            else:
                far = rng.random() < 0.3  # a lease or a long deadline: its heap entry never comes up
                table.put(PTimeout(id=key, timeout=now + (10**9 if far else rng.randint(-5, 300))))
        table.now = now
        due = sorted(entry.id for entry in table)
        table.now = None

        assert due == sorted(e.id for e in table.values() if now >= e.timeout), now
        assert len(table._heap) <= 2 * len(table) + 64
        for key in due:
            if rng.random() < 0.5:  # what the sweep settles, it deletes
                del table[key]
