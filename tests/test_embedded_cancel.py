"""Cancel stops the notebook on the embedded workspace: ``POST /runs/{id}/cancel`` reaches
``jobs/runs/cancel``, the notebook's process goes away, the Databricks run reads CANCELED
and its slot goes to the next queued run. Real HTTP, real notebooks, real processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service import jobs

from app.workspace.deploy import demo_job_settings, import_notebooks
from steps.jobs import upsert_job
from tests.harness import Service, make_settings, running_service

TEST_NOTEBOOKS = Path(__file__).parent / "notebooks"
JOB = "sleeps_with_pid"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("cancel"))) as svc:
        w = svc.runtime.workspace
        paths = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        upsert_job(w, demo_job_settings(JOB, paths[JOB], cluster=None))
        yield svc


def eventually[T](check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """Poll ``check`` until it returns something, or fail naming ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def start_sleeper(service: Service, run_id: str, pid_file: Path) -> int:
    """Start the sleeping notebook through DARA; returns its Databricks run id."""
    params = {"job": JOB, "params": {"pid_file": str(pid_file), "seconds": "300"}}
    response = service.http.post("/runs", json={"pipeline": "notebook_job", "id": run_id, "params": params})
    assert response.status_code == 201, response.text
    run = service.wait_until(run_id, "waiting", also=lambda run: bool(run["databricks_runs"]))
    return run["databricks_runs"][0]["run_id"]


def notebook_pid(pid_file: Path) -> int:
    return eventually(lambda: pid_file.exists() and int(pid_file.read_text()), f"{pid_file} being written")


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def ended(w: WorkspaceClient, run_id: int) -> jobs.Run | None:
    run = w.jobs.get_run(run_id)
    return run if run.state and run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED else None


def test_cancel_stops_the_notebook_and_its_run_reads_canceled(service: Service, tmp_path: Path) -> None:
    w = service.runtime.workspace
    databricks_run = start_sleeper(service, "cancel-stops", tmp_path / "pid")
    pid = notebook_pid(tmp_path / "pid")
    assert not process_gone(pid)

    response = service.http.post("/runs/cancel-stops/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["databricks"] == [{"run_id": databricks_run, "cancelled": True, "error": None}]
    run = eventually(lambda: ended(w, databricks_run), f"Databricks run {databricks_run} ending")
    assert run.state is not None and run.state.result_state == jobs.RunResultState.CANCELED
    assert [(t.state.life_cycle_state, t.state.result_state) for t in run.tasks or [] if t.state] == [
        (jobs.RunLifeCycleState.TERMINATED, jobs.RunResultState.CANCELED)
    ]
    eventually(lambda: process_gone(pid), f"the notebook's process {pid} exiting")
    # Idempotent, as on Databricks: the run has ended, so cancelling it again does nothing.
    w.jobs.cancel_run(databricks_run)
    with pytest.raises(NotFound, match="does not exist"):
        w.jobs.cancel_run(987_654)


def test_a_cancelled_run_frees_its_slot_and_a_queued_run_can_be_cancelled(service: Service, tmp_path: Path) -> None:
    """The embedded workspace runs two notebooks at once; a third waits in its queue."""
    w = service.runtime.workspace
    first = start_sleeper(service, "cancel-slot-1", tmp_path / "pid1")
    start_sleeper(service, "cancel-slot-2", tmp_path / "pid2")
    notebook_pid(tmp_path / "pid1")
    notebook_pid(tmp_path / "pid2")  # both slots taken
    queued = start_sleeper(service, "cancel-slot-3", tmp_path / "pid3")
    fourth = start_sleeper(service, "cancel-slot-4", tmp_path / "pid4")
    state = w.jobs.get_run(queued).state
    assert state is not None and state.life_cycle_state == jobs.RunLifeCycleState.QUEUED

    w.jobs.cancel_run(queued)  # still queued: it ends where it waits
    run = eventually(lambda: ended(w, queued), f"queued run {queued} ending")
    assert run.state is not None and run.state.result_state == jobs.RunResultState.CANCELED
    assert [t.state.result_state for t in run.tasks or [] if t.state] == [jobs.RunResultState.CANCELED]
    assert not (tmp_path / "pid3").exists()

    assert service.http.post("/runs/cancel-slot-1/cancel").json()["databricks"][0]["cancelled"] is True
    eventually(lambda: ended(w, first), f"Databricks run {first} ending")
    notebook_pid(tmp_path / "pid4")  # the slot went to the run queued behind the cancelled one
    for run_id in ("cancel-slot-2", "cancel-slot-3", "cancel-slot-4"):
        service.http.post(f"/runs/{run_id}/cancel")
    eventually(lambda: ended(w, fourth), f"Databricks run {fourth} ending")


@pytest.mark.parametrize("body", [{}, {"run_id": "7"}, {"run_id": -1}, {"run_id": True}, {"run_id": 2**70}])
def test_a_malformed_cancel_is_a_400(service: Service, body: dict[str, object]) -> None:
    w = service.runtime.workspace
    with pytest.raises(DatabricksError) as raised:
        w.api_client.do("POST", "/api/2.1/jobs/runs/cancel", body=body)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE", raised.value
