"""A run that ends while its start waits for room never starts a Databricks run.

A step refused for capacity is tried again until its deadline (app.durable.retries). If
the run it works for is cancelled meanwhile, a later try that got in would start a
Databricks run nobody watches, waits for or cancels: a billing leak. On the embedded
workspace with real notebooks: two sleeping notebooks fill its run slots and eight more
its queue, one more run is refused and tried again, it is cancelled through HTTP, a slot
is freed -- and its step ends, saying why, without ever starting a run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import errors as dbx
from resonate.types import Value

from app.durable import RetryPolicy, run_ended
from app.durable.errors import NotTriedAgain
from app.durable.resonate_format import rejection
from app.durable.retries import call_with_retries
from app.runtime import build_resonate
from steps.jobs import find_job_id
from steps.retryable import DATABRICKS
from tests.harness import Service, make_settings
from tests.test_capacity_queued import (
    QUEUE,
    SLOTS,
    fill_the_workspace,
    quickly_retrying_service,
    start,
    view,
)
from tests.test_embedded_cancel import JOB, eventually

LATE = "cancelled-while-refused"
#: A deadline far off, in epoch ms.
LATER = 4_000_000_000_000


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Several tries while the run is cancelled, and one soon after a slot frees.
    with quickly_retrying_service(tmp_path_factory.mktemp("capacity-cancelled")) as svc:
        yield svc


def databricks_runs(service: Service) -> set[int]:
    """Every Databricks run of the test job the workspace has, whatever its state."""
    w = service.runtime.workspace
    job_id = find_job_id(w, JOB)
    assert job_id is not None
    return {run.run_id for run in w.jobs.list_runs(job_id=job_id) if run.run_id is not None}


def step_of(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    [step] = [step for step in run["steps"] if step["id"] == step_id]
    return step


def test_a_run_cancelled_while_its_start_waits_for_room_never_starts_a_databricks_run(
    service: Service, tmp_path: Path
) -> None:
    ids = [f"fill-{n}" for n in range(SLOTS + QUEUE)]
    w = service.runtime.workspace
    filling: set[int] = set()
    try:
        filling = fill_the_workspace(service, ids, tmp_path)
        assert databricks_runs(service) == filling

        start(service, LATE, tmp_path / LATE)
        queued = eventually(
            lambda: (run := view(service, LATE))["queued"] and run["queued"]["attempts"] >= 2 and run,
            "the start to be refused for capacity, twice",
        )
        refused = queued["queued"]["step_id"]

        cancelled = service.http.post(f"/runs/{LATE}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["databricks"] == [], cancelled.json()
        # Room now: a try that went ahead regardless would get in.
        assert service.http.post(f"/runs/{ids[0]}/cancel").status_code == 200

        eventually(
            lambda: step_of(view(service, LATE), refused)["state"] != "pending" or databricks_runs(service) - filling,
            "the refused step to end (or, wrongly, to start a Databricks run)",
        )
        assert databricks_runs(service) == filling, "a Databricks run was started for a cancelled run"
        step = step_of(view(service, LATE), refused)
        assert step["state"] == "rejected", step
        assert f"run {LATE} ended (cancelled) while waiting for workspace capacity; not started" in step["error"]
        run = view(service, LATE)
        assert run["status"] == "cancelled" and run["databricks_runs"] == [] and run["queued"] is None, run
    finally:
        for run_id in [*ids, LATE]:
            service.http.post(f"/runs/{run_id}/cancel")
        for leaked in databricks_runs(service) - filling if filling else ():  # only with the bug
            w.jobs.cancel_run(leaked)


def full() -> dbx.DatabricksError:
    return dbx.ResourceConflict("the local queue limit of 8 waiting runs is reached", error_code="RESOURCE_CONFLICT")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("refusal", "says"),
    [
        (full, "run r ended (cancelled) while waiting for workspace capacity; not started"),
        (lambda: dbx.TemporarilyUnavailable("try later"), "run r ended (cancelled) between tries; not tried again"),
    ],
)
async def test_a_step_is_not_tried_again_once_its_run_has_ended(refusal: Any, says: str) -> None:
    tries: list[bool] = []
    ended: list[str | None] = [None]

    async def refused() -> str:
        tries.append(True)
        if len(tries) == 2:
            ended[0] = "run r ended (cancelled)"  # during the second wait
        if len(tries) < 4:
            raise refusal()
        return "got in"  # a started run nobody would wait for

    async def run_ended_yet() -> str | None:
        return ended[0]

    async def no_wait(seconds: float) -> None:
        pass

    policy = RetryPolicy(retries=5, delay=1.0, default=DATABRICKS, sleep=no_wait)
    with pytest.raises(NotTriedAgain, match=re.escape(says)) as raised:
        await call_with_retries(refused, {}, policy, name="run_job", deadline_ms=LATER, run_ended=run_ended_yet)
    assert len(tries) == 2  # no third try after the run ended
    assert str(raised.value).startswith("run_job: ")
    assert isinstance(raised.value.__cause__, dbx.DatabricksError)


@pytest.mark.anyio
async def test_how_a_run_ended_is_read_from_its_root_promise(tmp_path: Path) -> None:
    resonate = build_resonate(make_settings(tmp_path))
    try:
        assert await run_ended.how_ended(resonate, "never-made") == "run never-made ended (and is gone)"
        await resonate.promises.create("live", LATER, Value(data=None), {})
        assert await run_ended.how_ended(resonate, "live") is None
        await resonate.promises.create("live:1", LATER, Value(data=None), {})
        await resonate.promises.cancel("live", rejection("cancelled"))
        assert await run_ended.how_ended(resonate, "live") == "run live ended (cancelled)"

        error = NotTriedAgain("run_job", "run live ended (cancelled)", capacity=True)
        await run_ended.reject_step(resonate, "live:1", error)
        step = await resonate.promises.get("live:1")
        assert step.state == "rejected" and step.value.data["message"] == str(error)
        await run_ended.reject_step(resonate, "live:1", error)  # settled already: logged, not raised
    finally:
        await resonate.stop()
