"""A second worker finishes a run that a first one left suspended, without executing
the step that started the Databricks job again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from resonate.types import Value

from app.runs import read_run
from app.runtime import Runtime
from tests.harness import make_settings
from tests.shared_server import SharedServer, WorkerConnection

pytestmark = pytest.mark.anyio


def demo_job_runs(runtime: Runtime) -> list[int]:
    w = runtime.workspace
    job_id = next(job.job_id for job in w.jobs.list(name="dara-demo"))
    return [run.run_id for run in w.jobs.list_runs(job_id=job_id)]


async def wait_until_waiting(runtime: Runtime, run_id: str) -> None:
    with anyio.fail_after(30):
        while (run := await read_run(runtime.resonate, run_id)) is None or run.status != "waiting":
            await anyio.sleep(0.02)


@dataclass
class Workers:
    first_conn: WorkerConnection
    first: Runtime
    second: Runtime


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Workers]:
    """Two workers on one in-process server. Each has its own local workspace, so a job
    started by the second one would show up in its own workspace's run list."""
    shared = SharedServer()
    await shared.start()
    first_conn, second_conn = shared.worker("first"), shared.worker("second")
    first = await Runtime.start(make_settings(tmp_path / "first"), network=first_conn)
    second = await Runtime.start(make_settings(tmp_path / "second"), network=second_conn)
    try:
        yield Workers(first_conn, first, second)
    finally:
        await first.stop()  # a no-op for a worker a test already stopped
        await second.stop()
        await shared.stop()


async def test_second_worker_takes_over_a_suspended_run(workers: Workers) -> None:
    first, second = workers.first, workers.second
    pipeline = first.pipelines["starts_job_then_waits"]
    await first.start_run("takeover", pipeline, {"job": "dara-demo"}, started_by="test")
    await wait_until_waiting(first, "takeover")
    [started_run] = demo_job_runs(first)
    await first.stop()  # the first worker is gone; its run is suspended on the server

    await second.resonate.promises.resolve("takeover:1", Value(data="from the notebook"))
    handle = await second.resonate.get("takeover")
    with anyio.fail_after(30):
        result = await handle.result()

    assert result == {"run_id": started_run, "value": "from the notebook"}
    assert demo_job_runs(second) == []  # run_job was replayed from its promise, not re-run
    run = await read_run(second.resonate, "takeover")
    assert run is not None and run.status == "done"


async def test_an_abandoned_worker_is_taken_over_too(workers: Workers) -> None:
    """No clean shutdown: the first worker goes deaf mid-wait, as a killed process would."""
    first, second = workers.first, workers.second
    await first.start_run("abandoned", first.pipelines["waits_for_callback"], {}, started_by="test")
    await wait_until_waiting(first, "abandoned")
    workers.first_conn.abandon()

    await second.resonate.promises.resolve("abandoned:1", Value(data=42))
    handle = await second.resonate.get("abandoned")
    with anyio.fail_after(30):
        assert await handle.result() == 42
