"""DARA's adapter to resonate-sdk still matches the installed SDK.

app.durable.resonate_format knows how the SDK stores a run (ids, tags, calls, error
values, future ids), and app.durable.in_process subclasses the SDK's private server
state. None of that is the SDK's API, so an upgrade may change it without notice; these
tests fail first, naming what changed, instead of ``GET /runs`` reading runs wrongly.

The format is checked against what the SDK really stores for a real run on its own
in-process server (``LocalConnection``): a step, a wait, a detached call and a sleep.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
from datetime import timedelta
from typing import Any

import pytest
import resonate.connections.local as sdk_local
from resonate.codec import Codec, NoopEncryptor
from resonate.connections import LocalConnection
from resonate.context import Context as ResonateContext
from resonate.context import ResonateFuture
from resonate.error import ApplicationError, ServerError
from resonate.resonate import Resonate
from resonate.retry import Never

from app.durable import resonate_format
from app.durable.in_process import IndexedServerState, InProcessServer

pytestmark = pytest.mark.anyio

SDK = f"resonate-sdk {importlib.metadata.version('resonate-sdk')}"


def drifted(what: str) -> str:
    return (
        f"{SDK} no longer matches DARA's adapter: {what}. Update app.durable.resonate_format "
        "and app.durable.in_process to the new SDK (their docstrings say what they rely on)."
    )


# -- The storage format, on a real run ------------------------------------------------


def double(ctx: ResonateContext, x: int) -> int:
    return 2 * x


async def noop(ctx: ResonateContext) -> None:
    return None


async def makes_each_kind(ctx: ResonateContext, x: int, *, label: str) -> dict[str, Any]:
    """A step (1), a wait (2), a detached call (3) and a sleep (4), in that order."""
    step = ctx.run(double, x)
    wait = ctx.promise(timedelta(minutes=5))
    detached = ctx.detached("noop")
    sleep = ctx.sleep(timedelta(milliseconds=10))
    ids = {name: resonate_format.future_id(f) for name, f in (("step", step), ("wait", wait), ("sleep", sleep))}
    awaited_ids = {"step": await step.id(), "wait": await wait.id(), "sleep": await sleep.id()}
    await step
    await sleep
    try:
        outcome = await wait
    except ApplicationError as exc:
        outcome = f"raised: {exc}"
    return {"ids": ids, "awaited_ids": awaited_ids, "detached": await detached, "outcome": outcome}


@pytest.fixture
async def resonate() -> Any:
    resonate = Resonate(network=LocalConnection(tick_interval=0.01), retry_policy=Never())
    resonate.register(makes_each_kind, name="makes_each_kind")
    resonate.register(noop, name="noop")
    try:
        yield resonate
    finally:
        await resonate.stop()


async def created(resonate: Resonate, promise_id: str) -> Any:
    async with asyncio.timeout(10):
        while True:
            try:
                return await resonate.promises.get(promise_id)
            except ServerError:
                await asyncio.sleep(0.01)


async def test_the_ids_tags_and_calls_the_adapter_reads_are_what_the_sdk_stores(resonate: Resonate) -> None:
    run_id = "adapter"
    handle = resonate.run(run_id, "makes_each_kind", 21, label="seen")
    wait_id = resonate_format.child_id(run_id, 2)
    await created(resonate, wait_id)
    await resonate.promises.reject(wait_id, resonate_format.rejection("the notebook failed"))
    async with asyncio.timeout(30):
        result = await handle.result()

    step_id, detached_at, sleep_id = (resonate_format.child_id(run_id, n) for n in (1, 3, 4))
    assert result["awaited_ids"] == {"step": step_id, "wait": wait_id, "sleep": sleep_id}, drifted(
        "a run's n-th durable call is no longer stored as <run>:<n>"
    )
    assert result["ids"] == result["awaited_ids"], drifted("ResonateFuture._id is not the id the call is stored under")
    assert result["detached"] == resonate_format.detached_id(detached_at), drifted(
        f"a detached call made at {detached_at} is stored as {result['detached']}, "
        f"not {resonate_format.detached_id(detached_at)}"
    )

    root, step, wait, detached, sleep = [
        await resonate.promises.get(i) for i in (run_id, step_id, wait_id, result["detached"], sleep_id)
    ]
    assert resonate_format.is_root(root) and resonate_format.is_root_id(run_id), drifted(
        f"a run's root promise is not its own {resonate_format.ORIGIN}"
    )
    for record in (step, wait, detached, sleep):
        assert resonate_format.origin(record) == run_id == resonate_format.run_of(record.id), drifted(
            f"{record.id} does not name its run in {resonate_format.ORIGIN}"
        )
        assert not resonate_format.is_root(record) and not resonate_format.is_root_id(record.id)
    made = {"step": step, "wait": wait, "detached": detached, "sleep": sleep}
    made_by = {name: resonate_format.made_by(record) for name, record in made.items()}
    assert made_by == {"step": "run", "wait": "promise", "detached": "call", "sleep": "sleep"}, drifted(
        f"the tags that tell a step, a wait, a detached call and a sleep apart changed: {made_by}"
    )
    assert resonate_format.stored_call(root) == ("makes_each_kind", [21], {"label": "seen"}), drifted(
        f"a root promise's param no longer holds the call as {{func, args, kwargs}}: {root.param.data!r}"
    )
    assert resonate_format.stored_call(detached) == ("noop", [], {}), drifted("a detached call's param changed")
    assert resonate_format.stored_call(step) is None and resonate_format.stored_call(wait) is None


async def test_an_error_value_the_adapter_builds_is_one_the_sdk_raises_and_reads_back(resonate: Resonate) -> None:
    handle = resonate.run("adapter-error", "makes_each_kind", 1, label="x")
    wait_id = resonate_format.child_id("adapter-error", 2)
    await created(resonate, wait_id)
    await resonate.promises.reject(wait_id, resonate_format.rejection("disk full"))
    async with asyncio.timeout(30):
        result = await handle.result()

    assert result["outcome"] == "raised: disk full", drifted(
        "a wait rejected with the adapter's error value is not raised with its message"
    )
    record = await resonate.promises.get(wait_id)
    assert resonate_format.error_message(record.value.data) == "disk full"
    # The SDK's own encoding of an error, without its best-effort pickle, is the adapter's.
    encoded = Codec(NoopEncryptor()).decode(Codec(NoopEncryptor()).encode(ValueError("disk full")))
    without_pickle = {k: v for k, v in encoded.items() if k != "__py_pickle"}
    assert without_pickle == resonate_format.error_value("disk full"), drifted(
        f"the SDK stores an error as {encoded!r}"
    )


async def test_a_settle_knows_whether_its_write_was_kept_and_its_waiter_reads_the_value(resonate: Resonate) -> None:
    """resonate_format.settle_once writes a key into the value's headers, through the SDK's
    sender and codec: the SDK must still send, store and return those headers, and its
    awaiter must still read the value past them."""
    handle = resonate.run("adapter-settle", "makes_each_kind", 1, label="x")
    wait_id = resonate_format.child_id("adapter-settle", 2)
    await created(resonate, wait_id)

    first = await resonate_format.settle_once(resonate.promises, wait_id, "resolved", {"rows": 7})
    again = await resonate_format.settle_once(resonate.promises, wait_id, "resolved", {"rows": 7})
    async with asyncio.timeout(30):
        result = await handle.result()

    assert first.won and first.record.value.data == {"rows": 7}, drifted(
        f"a settle's value headers do not come back with its record: {first.record.value!r}"
    )
    assert not again.won and again.record == first.record, drifted("a later settle's record is not the first's")
    assert result["outcome"] == {"rows": 7}, drifted("a wait settled with value headers is not read as its value")


def test_a_future_still_carries_its_id() -> None:
    assert "_id" in ResonateFuture.__struct_fields__, drifted("ResonateFuture has no _id field any more")


# -- The in-process server's use of the SDK's private server --------------------------

#: What app.durable.in_process imports from resonate.connections.local.
PRIVATE_NAMES = ("I64_MAX", "PTimeout", "ServerState", "Task", "TTimeout", "_get", "extract_action_data")
#: The fields of the SDK's records that app.durable.in_process reads or builds.
FIELDS = {
    "DurablePromise": {"id", "state", "tags", "timeout_at", "created_at", "settled_at", "awaiters", "to_record"},
    "Task": {"id", "state", "version", "pid", "ttl", "resumes", "to_record"},
    "PTimeout": {"id", "timeout"},
    "TTimeout": {"id", "typ", "timeout"},
}


def test_the_private_names_the_in_process_server_imports_are_there() -> None:
    missing = [name for name in PRIVATE_NAMES if not hasattr(sdk_local, name)]
    assert not missing, drifted(f"resonate.connections.local has no {', '.join(missing)}")
    for name, fields in FIELDS.items():
        kind = getattr(sdk_local, name, None)
        has = set(getattr(kind, "__struct_fields__", ())) | {a for a in fields if callable(getattr(kind, a, None))}
        assert fields <= has, drifted(f"resonate.connections.local.{name} has no {sorted(fields - has)}")


def test_each_method_the_in_process_server_overrides_keeps_its_signature() -> None:
    overridden = [
        name
        for name, attribute in vars(IndexedServerState).items()
        if callable(attribute) and not name.startswith("__") and hasattr(sdk_local.ServerState, name)
    ]
    assert {"promise_create", "task_suspend", "preload", "enqueue_settle", "tick"} <= set(overridden)
    for name in overridden:
        ours = list(inspect.signature(getattr(IndexedServerState, name)).parameters)
        theirs = list(inspect.signature(getattr(sdk_local.ServerState, name)).parameters)
        assert ours == theirs, drifted(f"ServerState.{name} now takes {theirs}, and DARA's override takes {ours}")


def test_the_tables_the_in_process_server_replaces_are_still_the_servers_state() -> None:
    state = sdk_local.ServerState()
    names = ("promises", "tasks", "p_timeouts", "t_timeouts")
    tables = {name: type(getattr(state, name, None)).__name__ for name in names}
    assert tables == {"promises": "dict", "tasks": "dict", "p_timeouts": "list", "t_timeouts": "list"}, drifted(
        f"ServerState keeps its tables as {tables}"
    )
    connection = LocalConnection()
    assert isinstance(getattr(connection, "state", None), sdk_local.ServerState), drifted(
        "LocalConnection no longer keeps its ServerState in .state"
    )
    assert isinstance(InProcessServer().state, IndexedServerState)
