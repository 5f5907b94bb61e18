"""A run never hangs: watchers fail it when its job ends without calling back or a wait
reaches its deadline, users can cancel it, and failures explain themselves."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from resonate.types import Value

from app.runtime import Runtime
from app.services import starting
from app.workspace.deploy import demo_job_settings, import_notebooks
from scripts.databricks_double import DatabricksDouble, workspace_client
from steps.jobs import cancel_run, upsert_job
from tests.harness import Service, make_settings, running_service, sign
from tests.pipelines_for_tests import WITH_TEST_PIPELINES
from tests.postgres import BACKENDS, backend_settings

TEST_NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture(scope="module", params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on embedded defaults, plus jobs for the test notebooks, on each backend
    (in-process, Postgres) in turn. The tests at the end that build a runtime themselves
    are about the in-process server's eager start, and run on it alone."""
    settings = make_settings(tmp_path_factory.mktemp("lifecycle"), **backend_settings(request, request.param))
    with running_service(settings) as svc:
        w = svc.runtime.workspace
        paths = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        for name, path in paths.items():
            upsert_job(w, demo_job_settings(name, path, cluster=None))
        yield svc


def start(service: Service, run_id: str, pipeline: str, **params: object) -> None:
    response = service.http.post("/runs", json={"pipeline": pipeline, "id": run_id, "params": params})
    assert response.status_code == 201, response.text


def test_a_job_that_ends_without_calling_back_fails_the_run(service: Service) -> None:
    start(service, "life-silent", "notebook_job", job="no_callback")

    run = service.wait_for("life-silent", timeout=120)

    assert run["status"] == "failed"
    assert (
        "ended FAILED without calling back (task main FAILED (WORKER_EXIT_NONZERO): "
        "RuntimeError: the cluster went away before the callback cell [trace: "
    ) in run["error"]
    assert run["databricks_runs"][0]["url"] in run["error"]
    watcher = next(step for step in run["steps"] if step["name"] == "dara.watch_run")
    assert watcher["kind"] == "watcher"


def test_an_oversized_callback_fails_its_run_saying_the_size_and_the_setting(service: Service) -> None:
    """A notebook that calls back with a value over DARA_MAX_VALUE_BYTES: the cell reads the
    413 and raises at once (no retries), the notebook fails, and the run's error carries the
    cell's message -- how many bytes it sent, and the setting to raise."""
    start(service, "life-too-big", "notebook_job", job="oversized_callback")

    run = service.wait_for("life-too-big", timeout=120)

    assert run["status"] == "failed", run
    error = run["error"]
    assert "RuntimeError: DARA refused the callback (413) of " in error, error
    assert re.search(r"of \d{7,} bytes: .*request body over 1048576 bytes \(DARA_MAX_VALUE_BYTES\)", error), error


def test_a_job_that_succeeds_without_calling_back_fails_the_run(service: Service) -> None:
    """The notebook ended SUCCESS but neither called back nor exited with a value: the
    wait has nothing to take, so the run fails saying so. It is not done."""
    start(service, "life-quiet", "notebook_job", job="succeeds_without_calling_back")

    run = service.wait_for("life-quiet", timeout=120)

    assert run["status"] == "failed", run
    [databricks] = run["databricks_runs"]
    assert f"Databricks run {databricks['run_id']} ended SUCCESS without calling back" in run["error"]
    callback = run["steps"][0]
    assert (callback["kind"], callback["state"]) == ("callback", "rejected")


def test_a_wait_past_its_per_call_deadline_times_the_run_out(service: Service) -> None:
    start(service, "life-deadline", "waits_for_callback", timeout_seconds=1)

    run = service.wait_for("life-deadline")

    assert run["status"] == "timed_out"
    assert run["error"].startswith("timed out: nothing settled life-deadline:1 by its deadline")
    assert "DARA_CALLBACK_TIMEOUT" in run["error"]
    late = service.http.post(
        "/resolve", json={"id": "life-deadline:1", "value": 1, "token": sign(service.http, "life-deadline:1")}
    )
    assert late.status_code == 409
    assert (
        late.json()["detail"]
        == "'life-deadline:1' was already rejected_timedout; this callback's value was not recorded"
    )


def test_a_pipelines_own_wait_timeout_applies_to_its_waits(service: Service) -> None:
    start(service, "life-pipeline-deadline", "waits_briefly")

    run = service.wait_for("life-pipeline-deadline")

    assert run["status"] == "timed_out"


def test_a_run_that_reaches_its_own_deadline_is_timed_out(service: Service) -> None:
    """The run's deadline (@pipeline(deadline=), else DARA_RUN_DEADLINE) passes while its
    wait still has minutes left: the backend times the run itself out."""
    start(service, "life-own-deadline", "outlives_its_deadline")

    run = service.wait_for("life-own-deadline")
    listed = service.http.get("/runs", params={"status": "timed_out", "limit": 100}).json()["runs"]

    assert (run["status"], run["error"]) == ("timed_out", "deadline reached before it finished")
    assert "life-own-deadline" in [item["id"] for item in listed]


def test_cancel_ends_the_run_and_its_wait(service: Service) -> None:
    start(service, "life-cancel", "notebook_job", job="slow", params={"seconds": "20"})
    # "waiting" shows as soon as the callback promise exists, a moment before run_job starts.
    service.wait_until("life-cancel", "waiting", also=lambda run: bool(run["databricks_runs"]))

    response = service.http.post("/runs/life-cancel/cancel")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run"]["status"] == "cancelled"
    [databricks] = body["databricks"]
    assert databricks["cancelled"] is True  # tests/test_embedded_cancel.py: the notebook stops
    late = service.http.post(
        "/resolve", json={"id": "life-cancel:1", "value": 1, "token": sign(service.http, "life-cancel:1")}
    )
    assert late.status_code == 409 and "was already rejected_canceled" in late.json()["detail"]
    assert service.http.post("/runs/life-cancel/cancel").status_code == 409


def test_a_failed_step_shows_the_databricks_error_and_a_hint(service: Service) -> None:
    start(service, "life-no-job", "notebook_job", job="no-such-job")

    run = service.wait_for("life-no-job")

    assert run["status"] == "failed"
    assert "run_job: NotFound: no job is named 'no-such-job'" in run["error"]
    assert "(hint: check that the id or name exists in this workspace)" in run["error"]
    failed = next(step for step in run["steps"] if step["state"] == "rejected" and step["kind"] == "step")
    assert failed["name"] == "run_job"
    # The callback nobody will send is settled too: the run fails now, not at its deadline.
    callback = run["steps"][0]
    assert (callback["kind"], callback["state"]) == ("callback", "rejected")
    assert callback["error"].startswith("abandoned: the pipeline failed first")


def test_runs_are_listed_newest_first_with_filters_and_paging(service: Service) -> None:
    for n in range(3):
        start(service, f"life-list-{n}", "waits_for_callback")

    first = service.http.get("/runs", params={"pipeline": "waits_for_callback", "limit": 2}).json()
    second = service.http.get(
        "/runs", params={"pipeline": "waits_for_callback", "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    waiting = service.http.get("/runs", params={"status": "waiting", "limit": 100}).json()
    bad_cursor = service.http.get("/runs", params={"cursor": "zzz"})

    listed = [run["id"] for run in first["runs"] + second["runs"]]
    assert listed[:3] == ["life-list-2", "life-list-1", "life-list-0"]
    assert len(set(listed)) == len(listed)
    assert all(run["pipeline"] == "waits_for_callback" for run in first["runs"] + second["runs"])
    assert {"life-list-0", "life-list-1", "life-list-2"} <= {run["id"] for run in waiting["runs"]}
    assert all(run["status"] == "waiting" for run in waiting["runs"])
    assert bad_cursor.status_code == 422, bad_cursor.text
    assert bad_cursor.json()["detail"] == "cursor 'zzz' is not one this server issued; start without one"


#: The largest callback value the default DARA_MAX_VALUE_BYTES (1 MiB) lets through comfortably.
LARGE_VALUE_CHARS = 900_000


def test_a_large_value_is_served_once_and_never_listed(service: Service) -> None:
    """The run returns what its callback sent: GET /runs/{id} carries that value once,
    not as the run's result and again as the callback's, and GET /runs not at all."""
    start(service, "life-large", "waits_for_callback")
    service.wait_until("life-large", "waiting")
    value = {"marker": "life-large-value", "blob": "v" * LARGE_VALUE_CHARS}
    resolved = service.http.post(
        "/resolve", json={"id": "life-large:1", "value": value, "token": sign(service.http, "life-large:1")}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": "life-large:1", "state": "resolved", "already_settled": False}
    service.wait_for("life-large")

    one = service.http.get("/runs/life-large")
    listed = service.http.get("/runs", params={"pipeline": "waits_for_callback", "limit": 100})
    shown = service.http.get("/ui/runs/life-large")

    run = one.json()
    assert run["result"] == value
    [callback] = run["steps"]
    assert (callback["result"], callback["result_is_run_result"]) == (None, True)
    assert LARGE_VALUE_CHARS < len(one.content) < LARGE_VALUE_CHARS + 4096
    assert shown.text.count("life-large-value") == 1 and "the run's result, above" in shown.text
    [item] = [item for item in listed.json()["runs"] if item["id"] == "life-large"]
    assert set(item) == {
        "id",
        "pipeline",
        "status",
        "started_by",
        "progress",
        "started_at",
        "finished_at",
        "elapsed_seconds",
        "deadline",
        "error",
    }
    assert (item["status"], item["progress"]) == ("done", {"done": 1, "seen": 1})
    assert "life-large-value" not in listed.text and len(listed.content) < 20_000


def test_a_listed_run_shows_the_first_line_of_its_error(service: Service) -> None:
    start(service, "life-listed-error", "waits_for_callback")
    service.wait_until("life-listed-error", "waiting")
    error = "the notebook failed: " + "e" * 1000 + "\nTraceback (most recent call last): ..."
    service.http.post(
        "/reject",
        json={"id": "life-listed-error:1", "error": error, "token": sign(service.http, "life-listed-error:1")},
    )
    run = service.wait_for("life-listed-error")

    listed = service.http.get("/runs", params={"status": "failed", "limit": 100}).json()["runs"]

    [item] = [item for item in listed if item["id"] == "life-listed-error"]
    assert run["error"].endswith("Traceback (most recent call last): ...")
    assert item["error"].startswith("the notebook failed: eee") and item["error"].endswith("...")
    assert len(item["error"]) == 300 and "Traceback" not in item["error"]


def test_progress_counts_steps_done_of_steps_seen(service: Service) -> None:
    start(service, "life-progress", "waits_for_callback")
    service.wait_until("life-progress", "waiting")

    before = time.time()
    run = service.http.get("/runs/life-progress").raise_for_status().json()
    after = time.time()
    service.http.post(
        "/resolve", json={"id": "life-progress:1", "value": 1, "token": sign(service.http, "life-progress:1")}
    ).raise_for_status()
    done = service.wait_for("life-progress")

    assert run["progress"] == {"done": 0, "seen": 1}
    assert done["progress"] == {"done": 1, "seen": 1}
    started = datetime.fromisoformat(run["started_at"]).timestamp()
    # Running: the time from the run's start to the moment it was read (whole milliseconds).
    assert before - started - 0.001 <= run["elapsed_seconds"] <= after - started + 0.001, run
    # Ended: from its start to its end, however long ago that was.
    ended_after = datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(run["started_at"])
    assert done["elapsed_seconds"] == ended_after.total_seconds(), done  # to the millisecond


def test_cancel_run_step_cancels_through_the_jobs_api(databricks_double: DatabricksDouble) -> None:
    """Against the recorded-shape HTTP double: the request Databricks gets."""
    databricks_double.route("POST", "/api/2.2/jobs/runs/cancel", {})

    assert cancel_run(workspace_client(databricks_double), 42) == 42
    [request] = databricks_double.requests_to("POST", "/api/2.2/jobs/runs/cancel")
    assert request.json == {"run_id": 42}


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime on embedded defaults, without the service around it."""
    runtime = await Runtime.start(make_settings(tmp_path, deploy_on_start=False), pipelines=WITH_TEST_PIPELINES)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.mark.anyio
async def test_a_start_returns_with_the_run_already_at_its_first_wait(runtime: Runtime) -> None:
    """On the in-process server the run's first stretch runs inside the start: a loaded
    loop would otherwise take a turn to create the run and another to begin it."""
    await runtime.start_run("at-once", runtime.pipelines["waits_for_callback"], {}, started_by="test")

    assert (await runtime.resonate.promises.get("at-once:1")).state == "pending"


@pytest.mark.anyio
async def test_a_call_detached_in_the_first_stretch_runs_nested_in_the_start(runtime: Runtime) -> None:
    """Eagerly, what the first stretch detaches also runs inside the start, up to its own
    wait; each run then finishes on its own callback."""
    await runtime.start_run("detaching", runtime.pipelines["detaches_then_waits"], {}, started_by="test")

    assert runtime.local_server is not None
    promises = runtime.local_server.state.promises.values()
    waits = sorted(p.id for p in promises if p.tags.get("resonate:external") == "true")
    others = {"detaching", *waits}
    (detached,) = [p.id for p in promises if p.tags.get("resonate:parent") == "detaching" and p.id not in others]
    assert len(waits) == 2  # the run's own and the detached run's
    for wait in waits:
        await runtime.resonate.promises.resolve(wait, Value(data=wait))
    with anyio.fail_after(30):
        results = [await (await runtime.resonate.get(root)).result() for root in ("detaching", detached)]
    assert sorted(results) == waits


@pytest.mark.anyio
async def test_a_start_reads_no_step_and_a_repeated_start_reads_each_step_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run a moment old has no steps worth a read each, and a flood of starts pays for
    every read; asking again for a run that exists reads it whole, once."""
    reads: list[str] = []
    get = runtime.resonate.promises.get

    async def counted(promise_id: str) -> Any:
        reads.append(promise_id)
        return await get(promise_id)

    monkeypatch.setattr(runtime.resonate.promises, "get", counted)

    run, created = await starting.start(runtime, "reads", "waits_for_callback", {}, by_caller=True)
    assert created and run.steps == []
    assert reads == ["reads"]

    reads.clear()
    run, created = await starting.start(
        runtime, "reads", "waits_for_callback", {"timeout_seconds": "x"}, by_caller=True
    )
    assert not created and [step.id for step in run.steps] == ["reads:1"]
    assert reads.count("reads:1") == 1, reads
