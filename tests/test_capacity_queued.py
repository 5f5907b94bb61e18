"""A run waiting for room in the workspace reads as queued, on the embedded workspace with
real notebooks: two sleeping notebooks fill its run slots, eight more its queue, and the
next start is refused ("the local queue limit of 8 waiting runs is reached") and tried
again. Meanwhile ``GET /runs/{id}`` and the run page say why and when the next try is;
once a slot frees and the start gets in, that goes away. The eight runs the workspace
holds show as queued by the workspace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from app.durable import RetryPolicy
from app.workspace.deploy import demo_job_settings, import_notebooks
from steps.jobs import upsert_job
from steps.retryable import DATABRICKS
from tests.harness import Service, make_settings, running_service
from tests.test_embedded_cancel import JOB, TEST_NOTEBOOKS, eventually, notebook_pid

SLOTS, QUEUE = 2, 8


@contextmanager
def quickly_retrying_service(state: Path) -> Iterator[Service]:
    """DARA on the embedded workspace with the test notebooks' job, whose refused starts
    are tried again every half second at most: a test sees several tries, and the start
    soon after a slot frees up."""
    with running_service(make_settings(state)) as svc:
        svc.runtime.resonate.with_dependency(RetryPolicy(3, 0.1, capacity_max_delay=0.5, default=DATABRICKS))
        w = svc.runtime.workspace
        paths = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        upsert_job(w, demo_job_settings(JOB, paths[JOB], cluster=None))
        yield svc


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with quickly_retrying_service(tmp_path_factory.mktemp("queued")) as svc:
        yield svc


def start(service: Service, run_id: str, pid_file: Path) -> None:
    params = {"job": JOB, "params": {"pid_file": str(pid_file), "seconds": "300"}}
    response = service.http.post("/runs", json={"pipeline": "notebook_job", "id": run_id, "params": params})
    assert response.status_code == 201, response.text


def view(service: Service, run_id: str) -> dict[str, Any]:
    return service.http.get(f"/runs/{run_id}").raise_for_status().json()


def started_databricks_run(service: Service, run_id: str) -> dict[str, Any]:
    return service.wait_until(run_id, "waiting", also=lambda run: bool(run["databricks_runs"]))


def fill_the_workspace(service: Service, ids: list[str], folder: Path) -> set[int]:
    """Both run slots, then the eight queue places, taken by sleeping notebooks, a DARA
    run each (``ids``); returns their Databricks runs."""
    for run_id in ids[:SLOTS]:
        start(service, run_id, folder / run_id)
    for run_id in ids[:SLOTS]:
        notebook_pid(folder / run_id)  # both slots taken: what starts now waits in the queue
    for run_id in ids[SLOTS:]:
        start(service, run_id, folder / run_id)
    return {started_databricks_run(service, run_id)["databricks_runs"][0]["run_id"] for run_id in ids}


def test_a_start_refused_for_capacity_reads_as_queued_until_it_gets_in(service: Service, tmp_path: Path) -> None:
    ids = [f"full-{n}" for n in range(SLOTS + QUEUE)]
    try:
        fill_the_workspace(service, ids, tmp_path)

        # The workspace holds the eight: shown from the watchers' listing of active runs.
        held = eventually(
            lambda: (run := view(service, ids[-1]))["queued"] and run, "the workspace's queue to be shown", timeout=60
        )
        [databricks] = held["databricks_runs"]
        assert databricks["life_cycle_state"] == "QUEUED", held
        assert held["status"] == "waiting" and held["queued"]["source"] == "workspace", held
        assert held["queued"]["databricks_run_id"] == databricks["run_id"]
        assert held["queued"]["life_cycle_state"] == "QUEUED" and held["queued"]["reason"], held
        running = eventually(lambda: view(service, ids[0])["databricks_runs"][0]["life_cycle_state"], "a listing")
        assert running == "RUNNING" and view(service, ids[0])["queued"] is None

        # One more: the workspace refuses it, and DARA tries again.
        start(service, "one-too-many", tmp_path / "one-too-many")
        queued = eventually(
            lambda: (run := view(service, "one-too-many"))["queued"] and run["queued"]["attempts"] >= 2 and run,
            "the refused start to be shown queued, twice refused",
        )
        wait = queued["queued"]
        assert queued["status"] == "running" and queued["databricks_runs"] == [], queued
        assert wait["source"] == "capacity" and wait["step"] == "run_job", wait
        [refused] = [step for step in queued["steps"] if step["kind"] == "step" and step["state"] == "pending"]
        assert wait["step_id"] == refused["id"], queued
        assert "queue limit of 8 waiting runs is reached" in wait["reason"], wait
        assert datetime.fromisoformat(wait["since"]) <= datetime.fromisoformat(wait["next_attempt_at"])
        page = service.http.get("/ui/runs/one-too-many").text
        assert "<b>Queued.</b>" in page and "queue limit of 8 waiting runs is reached" in page, page
        assert "tries refused" in page and "next at" in page, page

        # A slot frees; the queue moves up and the start gets in.
        assert service.http.post(f"/runs/{ids[0]}/cancel").status_code == 200
        admitted = started_databricks_run(service, "one-too-many")
        assert admitted["queued"] is None or admitted["queued"]["source"] == "workspace", admitted
        page = service.http.get("/ui/runs/one-too-many").text
        assert "has no room for step" not in page
    finally:
        for run_id in [*ids, "one-too-many"]:
            service.http.post(f"/runs/{run_id}/cancel")
