"""A full workspace is a reason to wait, not to fail: capacity errors (a full run queue,
throttling) are retried with backoff for as long as the step's deadline allows."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from databricks.sdk import errors as dbx

from app.durable import RetryPolicy, StepError
from app.durable.retries import call_with_retries
from steps.retryable import DATABRICKS, is_capacity, is_transient
from tests.harness import Service, make_settings, running_service

RUNS = 50


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Capacity waits start at the step retry delay and double up to 1 s here, so runs
    # admitted late are not left sleeping long after a slot freed up.
    settings = make_settings(tmp_path_factory.mktemp("capacity"), step_retry_delay=0.2)
    with running_service(settings) as svc:
        svc.runtime.resonate.with_dependency(RetryPolicy(3, 0.2, capacity_max_delay=1.0, default=DATABRICKS))
        yield svc


@pytest.mark.anyio
async def test_fifty_concurrent_demo_runs_all_finish(service: Service) -> None:
    """The embedded workspace runs 2 notebooks at a time and queues 8: the other 40 starts
    are refused with "the local queue limit of 8 waiting runs is reached" and used to fail
    their runs for good."""
    ids = [f"cap-{n}" for n in range(RUNS)]
    async with httpx.AsyncClient(base_url=service.url, timeout=120) as http:
        started = await asyncio.gather(
            *(
                http.post("/runs", json={"pipeline": "notebook_job", "id": i, "params": {"job": "dara-demo"}})
                for i in ids
            )
        )
        assert [r.status_code for r in started] == [201] * RUNS
        runs: list[dict[str, Any]] = []
        for run_id in ids:
            while (run := (await http.get(f"/runs/{run_id}", params={"wait": 60})).json())["status"] in (
                "running",
                "waiting",
            ):
                pass  # each answer is a 60 s long poll
            runs.append(run)

    failed = {run["id"]: run["error"] for run in runs if run["status"] != "done"}
    assert failed == {}
    assert all(run["result"]["greeting"] == "hello world" for run in runs)


def queue_full() -> dbx.DatabricksError:
    return dbx.ResourceConflict("the local queue limit of 8 waiting runs is reached", error_code="RESOURCE_CONFLICT")


def test_capacity_errors_are_told_apart() -> None:
    assert is_capacity(queue_full()) and is_transient(queue_full())
    assert is_capacity(dbx.ResourceExhausted("quota", error_code="RESOURCE_EXHAUSTED"))
    assert is_capacity(dbx.TooManyRequests("slow down"))
    assert not is_capacity(dbx.ResourceConflict("a job with that name exists", error_code="RESOURCE_CONFLICT"))
    assert not is_capacity(ValueError("queue limit"))  # only the workspace's own errors


@pytest.mark.anyio
async def test_capacity_is_waited_for_past_the_transient_retries_but_not_past_the_deadline() -> None:
    slept: list[float] = []
    now = [1000.0]

    async def sleep(seconds: float) -> None:  # time passes without the test waiting for it
        slept.append(seconds)
        now[0] += seconds

    tries = [0]

    async def full_for_a_while() -> str:
        tries[0] += 1
        if tries[0] <= 6:  # more refusals than the 3 transient retries
            raise queue_full()
        return "admitted"

    async def always_full() -> str:
        raise queue_full()

    policy = RetryPolicy(
        retries=3, delay=1.0, capacity_max_delay=4.0, default=DATABRICKS, clock=lambda: now[0], sleep=sleep
    )
    admitted = await call_with_retries(full_for_a_while, {}, policy, deadline_ms=10**9 * 1000)
    assert admitted == "admitted" and slept == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]

    slept.clear()
    deadline = (now[0] + 10) * 1000
    with pytest.raises(StepError, match="queue limit of 8 waiting runs is reached"):
        await call_with_retries(always_full, {}, policy, deadline_ms=deadline)
    assert sum(slept) < 10  # gave up before the deadline instead of sleeping past it
