"""A second worker finishes a run that a first one left suspended, without executing
the step that started the Databricks job again. On each backend: two workers on one
in-process server, and two workers on one Postgres database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from resonate.types import Value

import app.runtime
from app.runtime import Runtime
from app.services.run_status import read_run
from app.workspace.embedded import LOCAL_TOKEN
from tests.harness import make_settings
from tests.pipelines_for_tests import WITH_TEST_PIPELINES
from tests.postgres import BACKENDS, KillableNetwork, backend_settings
from tests.shared_server import SharedServer

#: Task lease of the workers (DARA_LEASE): a dead worker's work waits this long.
LEASE = timedelta(seconds=2)

pytestmark = pytest.mark.anyio


def demo_job_runs(runtime: Runtime) -> list[int]:
    w = runtime.workspace
    job_id = next(job.job_id for job in w.jobs.list(name="dara-demo"))
    return [run.run_id for run in w.jobs.list_runs(job_id=job_id)]


async def wait_until_waiting(runtime: Runtime, run_id: str, *, after: str | None = None) -> None:
    """Until the run waits -- and, with ``after``, has done that step: "waiting" shows as
    soon as the wait's promise exists, which may be before the steps ahead of it ran."""
    with anyio.fail_after(30):
        while (
            (run := await read_run(runtime.resonate, run_id)) is None
            or run.status != "waiting"
            or (after is not None and not any(s.name == after and s.state == "resolved" for s in run.steps))
        ):
            await anyio.sleep(0.02)


@dataclass
class Workers:
    first: Runtime
    second: Runtime
    #: The first worker goes deaf, as a killed process would (on Postgres, mute too).
    abandon_first: Callable[[], None]
    #: Whether both workers use one workspace; else a job the second one started would
    #: show up in its own workspace's run list.
    one_workspace: bool


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    return backend_settings(request, request.param)


@pytest.fixture
async def workers(backend: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Workers]:
    """Two workers on one in-process server, each with a local workspace of its own; or
    two workers on one Postgres database, where the second one runs the embedded
    workspace and the first uses it as a remote one (a run's Databricks runs must be
    looked up where they were started, and the workspace must outlive the first)."""
    if not backend:
        shared = SharedServer()
        await shared.start()
        first_conn, second_conn = shared.worker("first"), shared.worker("second")
        first = await Runtime.start(
            make_settings(tmp_path / "first", lease=LEASE), network=first_conn, pipelines=WITH_TEST_PIPELINES
        )
        second = await Runtime.start(
            make_settings(tmp_path / "second", lease=LEASE), network=second_conn, pipelines=WITH_TEST_PIPELINES
        )
        try:
            yield Workers(first, second, first_conn.abandon, one_workspace=False)
        finally:
            await first.stop()  # a no-op for a worker a test already stopped
            await second.stop()
            await shared.stop()
        return
    second = await Runtime.start(
        make_settings(tmp_path / "second", lease=LEASE, **backend), pipelines=WITH_TEST_PIPELINES
    )
    try:
        assert second.embedded is not None
        monkeypatch.setenv("DATABRICKS_TOKEN", LOCAL_TOKEN)  # found by databricks-sdk's unified auth
        settings = make_settings(tmp_path / "first", lease=LEASE, databricks_host=second.embedded.host, **backend)
        first_conn = KillableNetwork(app.runtime.resonate_network(settings, "first"))
        first = await Runtime.start(settings, network=first_conn, pipelines=WITH_TEST_PIPELINES)
        try:
            yield Workers(first, second, first_conn.kill, one_workspace=True)
        finally:
            await first.stop()
    finally:
        await second.stop()


async def test_second_worker_takes_over_a_suspended_run(workers: Workers) -> None:
    first, second = workers.first, workers.second
    pipeline = first.pipelines["starts_job_then_waits"]
    await first.start_run("takeover", pipeline, {"job": "dara-demo"}, started_by="test")
    await wait_until_waiting(first, "takeover", after="run_job")
    [started_run] = demo_job_runs(first)
    await first.stop()  # the first worker is gone; its run is suspended on the server

    await second.resonate.promises.resolve("takeover:1", Value(data="from the notebook"))
    handle = await second.resonate.get("takeover")
    with anyio.fail_after(30):
        result = await handle.result()

    assert result == {"run_id": started_run, "value": "from the notebook"}
    # run_job was replayed from its promise, not run again
    assert demo_job_runs(second) == ([started_run] if workers.one_workspace else [])
    run = await read_run(second.resonate, "takeover")
    assert run is not None and run.status == "done"


async def test_an_abandoned_worker_is_taken_over_too(workers: Workers) -> None:
    """No clean shutdown: the first worker goes deaf mid-wait, as a killed process would."""
    first, second = workers.first, workers.second
    await first.start_run("abandoned", first.pipelines["waits_for_callback"], {}, started_by="test")
    await wait_until_waiting(first, "abandoned")
    workers.abandon_first()

    await second.resonate.promises.resolve("abandoned:1", Value(data=42))
    handle = await second.resonate.get("abandoned")
    with anyio.fail_after(30):
        assert await handle.result() == 42
