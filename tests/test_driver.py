"""The generator driver on the real SDK (in-process server): results are sent back into
the pipeline, step errors are thrown in and catchable, and typed values round-trip."""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import pydantic
import pytest
from resonate.connections import LocalConnection
from resonate.resonate import Resonate
from resonate.retry import Never
from resonate.testing import local_resonate
from resonate.types import Value

from app.durable import Context, RetryPolicy, StepDependencies, StepError, StepInfo, WaitDefaults, drive
from app.durable.context import EXPIRY_MARGIN
from app.durable.in_process import InProcessServer
from app.durable.telemetry import NoTelemetry, TelemetryHook
from app.wiring import wire
from steps.retryable import DATABRICKS

pytestmark = pytest.mark.anyio


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Window(pydantic.BaseModel):
    start: datetime
    days: int


def shift(p: Point, by: int) -> Point:
    return Point(p.x + by, p.y + by)


def fails(message: str) -> int:
    raise ValueError(message)


async def async_step(info: StepInfo) -> str:
    return info.id


async def run_pipeline(gen_fn: Any, run_id: str, *args: Any) -> Any:
    resonate = local_resonate()
    try:
        durable = drive(gen_fn)
        resonate.register(durable, name=gen_fn.__name__)
        return await resonate.run(run_id, durable, *args).result()
    finally:
        await resonate.stop()


async def test_step_results_are_sent_back_typed() -> None:
    seen: list[Any] = []

    def pipeline(ctx: Context, start: Point, window: Window) -> Generator[Any, Any, Point]:
        moved = yield ctx.run(shift, start, window.days)
        seen.append((type(start), type(window), type(moved)))
        own_id = yield ctx.run(async_step)
        seen.append(own_id)
        return moved

    result = await run_pipeline(pipeline, "drv-typed", Point(1, 2), Window(start=datetime(2026, 1, 1), days=3))

    assert result == Point(4, 5)
    assert seen[0] == (Point, Window, Point)
    assert seen[1] == "drv-typed:2"


async def test_yield_from_a_step_gets_its_typed_result_and_its_error_as_yield_does() -> None:
    """``yield from ctx.run(...)`` (typed for the checker) hands the driver the same call."""

    def pipeline(ctx: Context, start: Point) -> Generator[Any, Any, tuple[Point, str, str]]:
        moved = yield from ctx.run(shift, start, 2)
        own_id = yield from ctx.run(async_step)
        try:
            yield from ctx.run(fails, "bad input")
        except StepError as exc:
            return moved, own_id, f"caught {exc}"
        return moved, own_id, "not caught"

    moved, own_id, caught = await run_pipeline(pipeline, "drv-from", Point(1, 2))

    assert (moved, own_id) == (Point(3, 4), "drv-from:2")
    assert caught == "caught fails: ValueError: bad input"


async def test_step_errors_are_thrown_into_the_pipeline_and_catchable() -> None:
    def pipeline(ctx: Context) -> Generator[Any, Any, str]:
        try:
            yield ctx.run(fails, "bad input")
        except StepError as exc:
            return f"caught {exc}"
        return "not caught"

    assert await run_pipeline(pipeline, "drv-catch") == "caught fails: ValueError: bad input"


async def test_an_uncaught_step_error_fails_the_run_with_the_steps_name() -> None:
    def pipeline(ctx: Context) -> Generator[Any, Any, None]:
        yield ctx.run(fails, "boom")

    with pytest.raises(StepError, match="^fails: ValueError: boom$"):
        await run_pipeline(pipeline, "drv-uncaught")


async def test_yielding_something_not_durable_is_an_error_inside_the_pipeline() -> None:
    def pipeline(ctx: Context) -> Generator[Any, Any, str]:
        try:
            yield 42
        except TypeError as exc:
            return str(exc)
        return "no error"

    assert "yielded 42" in await run_pipeline(pipeline, "drv-yield")


async def test_transient_failures_are_retried_and_permanent_ones_are_not() -> None:
    calls: list[str] = []

    def flaky(kind: str) -> str:
        calls.append(kind)
        if kind == "transient" and len(calls) < 3:
            raise ConnectionResetError("reset by peer")
        if kind == "permanent":
            raise PermissionError("no")
        return "ok"

    def pipeline(ctx: Context) -> Generator[Any, Any, str]:
        first = yield ctx.run(flaky, "transient")
        try:
            yield ctx.run(flaky, "permanent")
        except StepError as exc:
            return f"{first} / {exc}"
        return first

    resonate = local_resonate()
    resonate.with_dependency(RetryPolicy(retries=3, delay=0, default=DATABRICKS))
    durable = drive(pipeline)
    resonate.register(durable, name="retries")
    try:
        result = await resonate.run("drv-retry", durable).result()
    finally:
        await resonate.stop()

    assert result == "ok / flaky: PermissionError: no"
    assert calls == ["transient", "transient", "transient", "permanent"]


async def who_started(info: StepInfo) -> list[str]:
    return [info.started_by, info.incarnation]


async def test_a_step_is_told_who_started_its_run() -> None:
    """Callback tokens are bound to the run's incarnation, which a step learns this way."""

    def pipeline(ctx: Context) -> Generator[Any, Any, list[str]]:
        return (yield ctx.run(who_started))

    meta = {"started_by": "ada@example.com", "incarnation": "i-1", "started_at": 1}
    resonate = local_resonate()
    durable = drive(pipeline)
    resonate.register(durable, name="who")
    try:
        result = await resonate.run("drv-who", durable, _dara=meta).result()
    finally:
        await resonate.stop()

    assert result == ["ada@example.com", "i-1"]


class Waits(NoTelemetry):
    """The waits a pipeline got past, as the runtime's metrics are told them."""

    def __init__(self) -> None:
        self.passed: list[tuple[str, str, str]] = []

    def wait_passed(self, run_id: str, pipeline: str, record: Any) -> None:
        self.passed.append((pipeline, record.id, record.state))


async def test_a_promise_resolved_from_outside_resumes_the_pipeline() -> None:
    def pipeline(ctx: Context) -> Generator[Any, Any, dict]:
        done = ctx.promise()
        promise_id = yield done.id()
        value = yield done
        return {"promise": promise_id, "value": value}

    resonate = local_resonate()
    wire(resonate, [], StepDependencies())
    resonate.with_dependency(TelemetryHook(telemetry := Waits()))
    durable = drive(pipeline)
    resonate.register(durable, name="resumes")
    try:
        handle = resonate.run("drv-promise", durable)
        record = await wait_for_promise(resonate, "drv-promise:1")
        assert record.state == "pending"
        await resonate.promises.resolve("drv-promise:1", Value(data={"rows": 7}))
        result = await handle.result()
    finally:
        await resonate.stop()

    assert result == {"promise": "drv-promise:1", "value": {"rows": 7}}
    assert telemetry.passed == [("resumes", "drv-promise:1", "resolved")]  # counted once, by its own record


@pytest.mark.parametrize(
    ("backend", "enforced_by"),
    [(InProcessServer, "DARA's in-process server"), (LocalConnection, "the watchdog")],
    ids=["backend-times-out", "watchdog-times-out"],
)
async def test_a_wait_past_its_deadline_fails_the_pipeline_with_a_timeout(backend: type, enforced_by: str) -> None:
    """Both ways a deadline is enforced end in the same error: the in-process server's
    own sweep, and the watchdog that backends which do not time waits out get."""

    def pipeline(ctx: Context) -> Generator[Any, Any, str]:
        try:
            yield ctx.promise(timedelta(seconds=1))
        except Exception as exc:  # noqa: BLE001 -- the error is the result under test
            return str(exc)
        return "resolved?"

    server = backend(group="dara")
    resonate = Resonate(network=server, retry_policy=Never())
    resonate.with_dependency(WaitDefaults(backend_times_out=getattr(backend, "times_out_waits", False)))
    resonate.with_dependency(TelemetryHook(telemetry := Waits()))
    wire(resonate, [], StepDependencies())
    durable = drive(pipeline)
    resonate.register(durable, name="times_out")
    try:
        message = await resonate.run("drv-deadline", durable).result()
        record = await resonate.promises.get("drv-deadline:1")
    finally:
        await resonate.stop()

    assert message.startswith("timed out: nothing settled drv-deadline:1 by its deadline"), enforced_by
    assert "DARA_CALLBACK_TIMEOUT" in message
    detached = [id for id in server.state.promises if id.startswith("drv-deadline:d") and "." not in id]
    if backend is InProcessServer:
        assert record.state == "rejected_timedout"
        assert detached == []
    else:
        assert record.state == "rejected"
        assert len(detached) == 1  # the watchdog
        # The backend's own timeout is the backstop, a margin past the watchdog's.
        assert record.timeout_at - record.created_at == (timedelta(seconds=1) + EXPIRY_MARGIN) // timedelta(
            milliseconds=1
        )
    assert telemetry.passed == [("times_out", "drv-deadline:1", record.state)]  # its wait metric counts it


async def wait_for_promise(resonate: Any, promise_id: str) -> Any:
    """The promise, once the pipeline has created it (it runs in the background)."""
    import anyio
    from resonate.error import ServerError

    with anyio.fail_after(10):
        while True:
            try:
                return await resonate.promises.get(promise_id)
            except ServerError:
                await anyio.sleep(0.01)


def test_drive_refuses_a_function_that_is_not_a_generator() -> None:
    def not_a_generator(ctx: Context) -> int:
        return 1

    with pytest.raises(TypeError, match="must be a generator function"):
        drive(not_a_generator)
