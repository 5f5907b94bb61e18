"""Pipelines that exist only for tests: they wait on a promise nobody settles but the test."""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

from app.durable import Context, pipeline
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
def records_a_step_then_waits(ctx: Context, value: str = "/Volumes/main/default/landing/in.csv") -> Generator[Any, Any, Any]:
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
