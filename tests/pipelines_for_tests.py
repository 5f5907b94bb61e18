"""Pipelines that exist only for tests: they wait on a promise nobody settles but the test.

The test service runs them beside the service's own (:data:`WITH_TEST_PIPELINES`, the
default of tests.harness.running_service).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from datetime import timedelta
from typing import Annotated, Any

from app.durable import SERVER_ONLY, Context, Pipeline, pipeline
from pipelines import PIPELINES
from steps.jobs import JobRun, run_job


@pipeline
def waits_for_callback(ctx: Context, timeout_seconds: float | None = None) -> Generator[Any, Any, Any]:
    """Wait for `<run>:1` to be settled through POST /resolve, and return its value."""
    timeout = timedelta(seconds=timeout_seconds) if timeout_seconds else None
    value = yield ctx.promise(timeout)
    return value


@pipeline(wait_timeout=timedelta(seconds=1))
def waits_briefly(ctx: Context) -> Generator[Any, Any, Any]:
    """Wait for `<run>:1`, but only as long as the pipeline's own wait_timeout."""
    return (yield ctx.promise())


@pipeline
def starts_job_then_waits(ctx: Context, job: str) -> Generator[Any, Any, dict[str, Any]]:
    """Start `job` (without a callback), then wait for the test to settle `<run>:1`."""
    done = ctx.promise()
    yield done.id()
    run: JobRun = yield ctx.run(run_job, job, {})
    value = yield done
    return {"run_id": run.run_id, "value": value}


@pipeline
def detaches_then_waits(ctx: Context) -> Generator[Any, Any, Any]:
    """Start a detached ``waits_for_callback`` before anything else, then wait for `<run>:2`."""
    yield ctx.detach("waits_for_callback")
    return (yield ctx.promise())


def echo(value: str) -> str:
    """A step that records its argument as its result."""
    return value


@pipeline
def records_a_step_then_waits(
    ctx: Context, value: str = "/Volumes/main/default/landing/in.csv"
) -> Generator[Any, Any, Any]:
    """Record a step's result at `<run>:1`, then wait at `<run>:2`; return both."""
    recorded = yield ctx.run(echo, value)
    settled = yield ctx.promise()
    return {"step": recorded, "value": settled}


def reports_a_databricks_run(url: str) -> dict[str, Any]:
    """A step whose result looks like a Databricks run, with whatever ``url`` it is given."""
    return {"job_id": 7, "run_id": 8, "url": url}


@pipeline
def reports_a_run_then_waits(ctx: Context, url: str) -> Generator[Any, Any, Any]:
    """Record a step result shaped like a Databricks run (its `url` chosen by the caller), then wait."""
    yield ctx.run(reports_a_databricks_run, url)
    return (yield ctx.promise())


@pipeline
def sleeps(ctx: Context, seconds: float = 1.0) -> Generator[Any, Any, str]:
    """Sleep ``seconds`` durably (a timer the backend fires), then return "slept"."""
    yield ctx.sleep(timedelta(seconds=seconds))
    return "slept"


#: Calls of ``fails_once_then_echoes`` so far, by key.
FLAKY_CALLS: dict[str, int] = {}


def fails_once_then_echoes(key: str) -> str:
    """A step whose first call for ``key`` fails as a dropped connection does (transient)."""
    FLAKY_CALLS[key] = FLAKY_CALLS.get(key, 0) + 1
    if FLAKY_CALLS[key] == 1:
        raise ConnectionError(f"connection reset (call 1 for {key})")
    return key


@pipeline
def retries_a_step(ctx: Context, key: str) -> Generator[Any, Any, str]:
    """Run a step that fails once with a transient error, so it is retried."""
    return (yield ctx.run(fails_once_then_echoes, key))


@pipeline
def waits_then_sleeps(ctx: Context, seconds: float = 0.2) -> Generator[Any, Any, Any]:
    """Wait for `<run>:1`, then sleep: the run resumes twice, replaying the wait the second time."""
    value = yield ctx.promise()
    yield ctx.sleep(timedelta(seconds=seconds))
    return value


@pipeline(deadline=timedelta(seconds=1), wait_timeout=timedelta(minutes=10))
def outlives_its_deadline(ctx: Context) -> Generator[Any, Any, Any]:
    """Wait for `<run>:1` longer than the run may last: the run itself reaches its deadline."""
    return (yield ctx.promise())


#: Holds ``held_step`` until a test sets it (a step in flight, for as long as a test needs).
STEP_GATE = threading.Event()


async def held_step() -> str:
    await asyncio.to_thread(STEP_GATE.wait, 60)
    return "released"


@pipeline
def waits_while_a_step_runs(ctx: Context) -> Generator[Any, Any, Any]:
    """Open the wait `<run>:1`, run ``held_step`` at `<run>:2`, then wait: running, then waiting."""
    wait = ctx.promise()
    held = yield ctx.run(held_step)
    return [held, (yield wait)]


@pipeline
def has_a_server_only_param(
    ctx: Context, name: str, root: Annotated[str, SERVER_ONLY] = "/srv/dara"
) -> Generator[Any, Any, str]:
    """``root`` is for DARA's own routes to set: ``POST /runs`` refuses it."""
    return (yield ctx.run(echo, f"{name} in {root}"))


#: The service's pipelines and these.
WITH_TEST_PIPELINES: tuple[Pipeline, ...] = (
    *PIPELINES,
    waits_for_callback,
    waits_briefly,
    starts_job_then_waits,
    detaches_then_waits,
    records_a_step_then_waits,
    reports_a_run_then_waits,
    sleeps,
    retries_a_step,
    waits_then_sleeps,
    outlives_its_deadline,
    waits_while_a_step_runs,
    has_a_server_only_param,
)
