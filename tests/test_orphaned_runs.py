"""A Databricks run started as its DARA run ended is cancelled by the sweep of the listing.

The window (app.orphaned_runs): a ``run-now`` in flight when the DARA run is cancelled.
The Databricks run starts, the step can no longer record it, so the cancel service and
the watchers never learn of it. On the HTTP double, run-now's answer is held until the
DARA run has been cancelled over HTTP, then released: the sweep of the watchers' listing
(another run keeps a watcher looking) must cancel the orphan, and never the run that
DARA still waits for, nor one whose own run-now is still unanswered. Both with the listing at once and paced (run events on).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databricks.sdk.service.jobs import RunResultState

from app.durable.resonate_format import run_of
from app.workspace.deploy import demo_job_settings, import_notebooks
from scripts.databricks_double import DatabricksDouble
from scripts.jobs_service_double import CANCEL_RUN, JOB_ID, RUN_NOW, JobsService
from steps.jobs import find_job_id, upsert_job
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
    assert cancelled_runs(jobs) == [orphan], "cancelled once, and the runs still waited for never"
    assert active.orphans is not None and active.orphans.cancelled == {orphan: ORPHANED}
    assert jobs.runs[kept].active and jobs.runs[starting].active and jobs.runs[foreign].active
    run = service.http.get(f"/runs/{ORPHANED}").json()
    assert run["status"] == "cancelled" and run["databricks_runs"] == [], "no DARA record names the orphan"
    assert [service.http.get(f"/runs/{r}").json()["status"] for r in (KEPT, STARTING)] == ["waiting", "waiting"]


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
