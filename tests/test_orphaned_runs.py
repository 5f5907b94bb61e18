"""A Databricks run started as its DARA run ended is cancelled by the sweep of the listing.

The window (app.orphaned_runs): a ``run-now`` in flight when the DARA run is cancelled.
The Databricks run starts, the step can no longer record it, so the cancel service and
the watchers never learn of it. On the HTTP double, run-now's answer is held until the
DARA run has been cancelled over HTTP, then released: the sweep of the watchers' listing
(another run keeps a watcher looking) must cancel the orphan, and never the run that
DARA still waits for, nor one whose own run-now is still unanswered. Both with the listing at once and paced (run events on).
With no other run watched there is no listing: the step itself, once run-now answered,
reads its run and cancels what it started (steps.undone).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databricks.sdk.service.jobs import RunResultState
from resonate.types import Value

from app.durable import run_ended
from app.durable.errors import EndedWhileRunning
from app.durable.resonate_format import rejection, run_of
from app.runtime import build_resonate
from app.workspace.deploy import demo_job_settings, import_notebooks
from scripts.databricks_double import DatabricksDouble
from scripts.jobs_service_double import CANCEL_RUN, JOB_ID, RUN_NOW, JobsService
from steps.jobs import JobRun, cancel_started, find_job_id, run_job, submit_notebook, upsert_job
from steps.undone import undone_if_run_ended
from tests.harness import Service, make_settings, running_service
from tests.test_embedded_cancel import JOB, TEST_NOTEBOOKS, ended, eventually, start_sleeper
from tests.test_run_watch import databricks_run, on_double, start, until

KEPT, ORPHANED, STARTING = "keeps-waiting", "cancelled-in-flight", "still-starting"
#: Run events on: the listing is paced (app.paced_listing), here to its highest budget.
PACED = {
    "run_events_user": "databricks",
    "run_events_password": "run-events-password-0123456789",
    "watch_calls_per_minute": 600,
}


@pytest.fixture(params=[{}, PACED], ids=["listed", "paced"])
def watched(
    request: pytest.FixtureRequest, databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Service, JobsService]]:
    overrides: dict[str, Any] = request.param
    with on_double(databricks_double, tmp_path, monkeypatch, watch_interval=0.5, **overrides) as pair:
        yield pair


def cancelled_runs(jobs: JobsService) -> list[int]:
    """The Databricks runs DARA asked to cancel, in order."""
    return [int(r.json["run_id"]) for r in jobs.double.requests_to("POST", CANCEL_RUN)]


def started_for(jobs: JobsService, run_id: str, *, but: int) -> int:
    """The Databricks run started for DARA run ``run_id``, told by the callback it
    carries; ``but`` names it too, and is not that run."""
    [started] = [n for n, run in jobs.runs.items() if n != but and run_of(run.params.get("promise_id", "")) == run_id]
    return started


def test_a_databricks_run_started_as_its_run_was_cancelled_is_cancelled(watched: tuple[Service, JobsService]) -> None:
    """The orphan is cancelled once, by the sweep. Never cancelled: a run DARA watches,
    one whose run-now is still unanswered (its DARA run waits for it), and someone
    else's run that names the cancelled run's wait with a signature DARA did not issue."""
    service, jobs = watched
    active = service.runtime.active_runs
    start(service, KEPT)
    kept = databricks_run(service, KEPT)["run_id"]
    # Someone else's run naming the wait of the run about to be cancelled: the signature is not DARA's.
    forged = {"promise_id": f"{ORPHANED}:1", "callback_signature": "x.forged", "callback_url": service.url}
    foreign = httpx.post(jobs.double.url + RUN_NOW, json={"job_id": JOB_ID, "notebook_params": forged})
    foreign = foreign.raise_for_status().json()["run_id"]

    release = jobs.hold_run_now()
    try:
        start(service, ORPHANED)
        start(service, STARTING)
        until(lambda: len(jobs.runs) == 4, "both run-nows to start their runs, their answers held")
        orphan, starting = started_for(jobs, ORPHANED, but=foreign), started_for(jobs, STARTING, but=foreign)
        cancelled = service.http.post(f"/runs/{ORPHANED}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["databricks"] == [], "the cancel service cannot know of the run yet"

        until(lambda: not jobs.runs[orphan].active, "the sweep to cancel the orphaned run")
        listings = active.listings
        until(lambda: active.listings >= listings + 2, "two more listings after it")
        assert jobs.runs[starting].active, "a run whose DARA run waits for its run-now was cancelled"
    finally:
        release.set()
    assert databricks_run(service, STARTING)["run_id"] == starting
    listings = active.listings
    until(lambda: active.listings >= listings + 2, "two more listings once it is recorded")

    assert jobs.runs[orphan].result_state == "CANCELED"
    # The sweep cancelled it first; the step, once its run-now answered, may again (a no-op).
    assert set(cancelled_runs(jobs)) == {orphan}, "the runs still waited for were cancelled"
    assert active.orphans is not None and active.orphans.cancelled == {orphan: ORPHANED}
    assert jobs.runs[kept].active and jobs.runs[starting].active and jobs.runs[foreign].active
    run = service.http.get(f"/runs/{ORPHANED}").json()
    assert run["status"] == "cancelled" and run["databricks_runs"] == [], "no DARA record names the orphan"
    assert [service.http.get(f"/runs/{r}").json()["status"] for r in (KEPT, STARTING)] == ["waiting", "waiting"]


def test_with_no_run_watched_the_step_cancels_the_run_it_started_as_its_run_was_cancelled(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common case, closed at the source (steps.undone): one run, cancelled while its
    run-now is in flight, and no other run watched, so no listing runs and the sweep
    never sees the orphan. The step reads its run once run-now answered, cancels what it
    started, and fails saying both."""
    with on_double(databricks_double, tmp_path, monkeypatch, watch_interval=0.5) as (service, jobs):
        release = jobs.hold_run_now()
        try:
            start(service, ORPHANED)
            until(lambda: len(jobs.runs) == 1, "run-now to start its run, its answer held")
            [orphan] = jobs.runs
            cancelled = service.http.post(f"/runs/{ORPHANED}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["databricks"] == [], "the cancel service cannot know of the run yet"
        finally:
            release.set()

        def step_ended() -> dict[str, Any] | None:
            run = service.http.get(f"/runs/{ORPHANED}").raise_for_status().json()
            return next((s for s in run["steps"] if s["name"] == "run_job" and s["state"] != "pending"), None)

        step = until(step_ended, "the run_job step to fail, saying why")
        assert step["state"] == "rejected", step
        says = f"run {ORPHANED} ended (cancelled) while the step ran; Databricks run {orphan} cancelled"
        assert says in step["error"], step
        assert jobs.runs[orphan].result_state == "CANCELED"
        assert cancelled_runs(jobs) == [orphan]
        run = service.http.get(f"/runs/{ORPHANED}").json()
        assert run["status"] == "cancelled" and run["databricks_runs"] == [], run
        active = service.runtime.active_runs
        assert active.listings == 0, "a listing ran: the sweep, not the step, may have cancelled it"


def plain_step() -> int:
    return 1


@pytest.mark.anyio
async def test_only_a_step_that_declares_an_undo_reads_its_run_and_only_an_ended_run_is_undone(
    tmp_path: Path,
) -> None:
    """Steps that start nothing (the benchmark's) never read their run; one that declares
    an undo gets it called, with its result and the arguments it names, once its run ended."""
    assert run_job.undo_if_run_ended is submit_notebook.undo_if_run_ended is cancel_started  # type: ignore[attr-defined]
    nothing: Any = object()  # any read of the run through it would raise
    await run_ended.undo_if_ended(nothing, "r", "plain_step", plain_step, 1, {})

    undone: list[tuple[JobRun, str]] = []

    def undo(started: JobRun, w: str) -> str:
        undone.append((started, w))
        if w == "broken":
            raise ConnectionError("no route")
        return f"Databricks run {started.run_id} cancelled"

    @undone_if_run_ended(undo)
    def starts() -> JobRun:
        raise AssertionError("not called here")

    started = JobRun(job_id=1, run_id=7, url="u")
    later = 2**62
    resonate = build_resonate(make_settings(tmp_path))
    try:
        await resonate.promises.create("live", later, Value(data=None), {})
        await run_ended.undo_if_ended(resonate, "live", "starts", starts, started, {"w": "client", "job": "j"})
        assert undone == [], "undone while its run was pending"

        await resonate.promises.cancel("live", rejection("cancelled"))
        with pytest.raises(EndedWhileRunning) as raised:
            await run_ended.undo_if_ended(resonate, "live", "starts", starts, started, {"w": "client", "job": "j"})
        assert undone == [(started, "client")]
        assert str(raised.value) == "starts: run live ended (cancelled) while the step ran; Databricks run 7 cancelled"

        with pytest.raises(EndedWhileRunning, match=r"stopping what it started failed \(ConnectionError: no route\)"):
            await run_ended.undo_if_ended(resonate, "live", "starts", starts, started, {"w": "broken"})
    finally:
        await resonate.stop()


# -- the embedded workspace: its listing shows run-now's parameters too ------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = make_settings(tmp_path_factory.mktemp("orphans-embedded"), watch_interval=0.5)
    with running_service(settings) as svc:
        w = svc.runtime.workspace
        paths = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        upsert_job(w, demo_job_settings(JOB, paths[JOB], cluster=None))
        yield svc


def test_on_the_embedded_workspace_a_run_no_step_recorded_is_cancelled_once_its_run_ended(
    embedded: Service, tmp_path: Path
) -> None:
    """A real notebook started with a run's callback, as a run-now whose answer was lost
    would have started it: once that run is cancelled, the sweep cancels it too."""
    w = embedded.runtime.workspace
    kept = start_sleeper(embedded, "embedded-kept", tmp_path / "kept")
    recorded = start_sleeper(embedded, "embedded-ended", tmp_path / "ended")
    run = embedded.http.get("/runs/embedded-ended").json()
    [wait] = [step["id"] for step in run["steps"] if step["kind"] == "callback" and step["state"] == "pending"]
    callback = embedded.runtime.signer.callback(wait, run["incarnation"]).widgets()
    params = {"pid_file": str(tmp_path / "orphan"), "seconds": "300"} | callback
    job_id = find_job_id(w, JOB)
    assert job_id is not None
    orphan = w.jobs.run_now(job_id=job_id, notebook_params=params).run_id
    assert orphan is not None
    try:
        cancelled = embedded.http.post("/runs/embedded-ended/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert [r["run_id"] for r in cancelled.json()["databricks"]] == [recorded]

        eventually(lambda: ended(w, orphan), "the sweep to cancel the run no step recorded")
        state = w.jobs.get_run(orphan).state
        assert state is not None and state.result_state == RunResultState.CANCELED
        assert embedded.runtime.active_runs.orphans is not None
        assert embedded.runtime.active_runs.orphans.cancelled == {orphan: "embedded-ended"}
        assert ended(w, kept) is None and embedded.http.get("/runs/embedded-kept").json()["status"] == "waiting"
    finally:
        embedded.http.post("/runs/embedded-kept/cancel")
        w.jobs.cancel_run(orphan)
