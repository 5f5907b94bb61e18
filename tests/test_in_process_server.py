"""DARA's in-process server answers as the SDK's does, from indexes instead of scans.

The server under test checks itself: each indexed ``preload`` is compared with the
SDK's scan over the same table, and each task fulfilled is checked to be no promise's
awaiter any more, which is what the SDK's scan in ``enqueue_settle`` ensures. A mixed
workload then runs through it: steps, waits resolved, rejected and timed out, detached
watchdogs with durable sleeps, a failing pipeline, and a run ended from outside while
it waits (as ``POST /runs/{id}/cancel`` ends one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any

import pytest
from resonate.connections.local import ServerState
from resonate.resonate import Resonate
from resonate.retry import Never
from resonate.types import Value

from app.durable import Context, WaitDefaults, drive
from app.durable.in_process import IndexedServerState, InProcessServer
from app.watchers import register_watchers

pytestmark = pytest.mark.anyio


class CheckedState(IndexedServerState):
    """Every indexed answer compared with the scan it replaces."""

    def __init__(self) -> None:
        super().__init__()
        self.preloads = 0
        self.fulfilled = 0

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
    register_watchers(resonate)
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
    assert state.preloads > 0 and state.fulfilled >= 14
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
