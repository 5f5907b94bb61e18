"""Repairing a run's failed Databricks run (``POST /runs/{id}/repair``, ``steps.jobs.repair_run``)
on the Databricks HTTP double and the embedded workspace:

* with ``DARA_REPAIR_WINDOW`` set, a Databricks run that fails without calling back keeps
  its wait open; a repair reruns the failed tasks with the parameters the run was started
  with (so the rerun notebook calls back to the same wait) and the run ends with the value;
* a second repair passes the first one's id as ``latest_repair_id``, as Databricks requires;
* without the window the run fails at once, as before;
* a run that ended, a caller who did not start the run, and the embedded workspace are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.config import Config

import app.watchers
import app.workspace.client
from scripts.databricks_double import DatabricksDouble
from scripts.jobs_service_double import GET_RUN
from tests.harness import APPS_RUNTIME, Service, make_settings, running_service
from tests.jobs_repair_double import REPAIR_PATHS, RepairableJobs
from tests.test_run_watch import RUN_WATCH_PIPELINES, databricks_run, start, until

ADA = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-User": "1@2"}
BOB = {"X-Forwarded-Email": "bob@example.com", "X-Forwarded-User": "3@4"}
#: Long enough that no test outlives it: a run held for repair never fails by the window.
WINDOW = 600


@contextmanager
def on_double(
    double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> Iterator[tuple[Service, RepairableJobs]]:
    """The service on the double as ada (forwarded users, as in a Databricks App), its
    watchers looking every half second with no grace period."""
    monkeypatch.setenv("DATABRICKS_TOKEN", "test")
    for name, value in APPS_RUNTIME.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(app.workspace.client, "Config", functools.partial(Config, http_timeout_seconds=5))
    monkeypatch.setattr(app.watchers, "GRACE_SECONDS", 0)
    jobs = RepairableJobs(double)
    settings = make_settings(
        tmp_path,
        databricks_host=double.url,
        deploy_on_start=False,
        databricks_retry_timeout=1,
        watch_interval=0.5,
        trust_forwarded_user=True,
        **overrides,
    )
    with running_service(settings, pipelines=RUN_WATCH_PIPELINES) as service:
        service.http.headers.update(ADA)
        yield service, jobs


@pytest.fixture
def repairable(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Service, RepairableJobs]]:
    with on_double(databricks_double, tmp_path, monkeypatch, repair_window=WINDOW) as pair:
        yield pair


def reads_of(jobs: RepairableJobs, run_id: int) -> int:
    return sum(1 for r in jobs.double.requests_to("GET", GET_RUN) if int(r.query["run_id"][0]) == run_id)


def fail_and_stay_waiting(service: Service, jobs: RepairableJobs, run_id: str, databricks: int) -> None:
    """End the Databricks run FAILED, and see its watcher read it ended, more than once,
    without failing the wait (a watcher without the window rejects it on its second read)."""
    before = reads_of(jobs, databricks)
    jobs.end(databricks, "FAILED", message="Cluster lost")
    until(lambda: reads_of(jobs, databricks) >= before + 3, "the watcher to read the failed run three times")
    run = service.http.get(f"/runs/{run_id}").json()
    assert run["status"] == "waiting", run
    assert run["databricks_runs"][0]["state"] is None  # still watched


def repair(service: Service, run_id: str, headers: dict[str, str] | None = None) -> Any:
    return service.http.post(f"/runs/{run_id}/repair", headers=headers or {})


def test_a_failed_run_is_repaired_twice_and_its_callback_ends_the_run(
    repairable: tuple[Service, RepairableJobs],
) -> None:
    service, jobs = repairable
    start(service, "fixed")
    databricks = databricks_run(service, "fixed")["run_id"]

    fail_and_stay_waiting(service, jobs, "fixed", databricks)
    first = repair(service, "fixed")
    assert first.status_code == 200, first.text
    assert first.json()["databricks"] == [{"run_id": databricks, "repair_id": 7000, "error": None}]
    assert jobs.runs[databricks].active

    fail_and_stay_waiting(service, jobs, "fixed", databricks)
    second = repair(service, "fixed")
    assert second.status_code == 200, second.text
    assert second.json()["databricks"] == [{"run_id": databricks, "repair_id": 7001, "error": None}]

    # Only the failed tasks rerun, with the run's own parameters: none are passed.
    bodies = [request.json for path in REPAIR_PATHS for request in jobs.double.requests_to("POST", path)]
    assert bodies == [
        {"run_id": databricks, "rerun_all_failed_tasks": True},
        {"run_id": databricks, "rerun_all_failed_tasks": True, "latest_repair_id": 7000},
    ]
    # The rerun notebook calls back with the widgets the run was started with.
    widgets = jobs.runs[databricks].params
    resolved = service.http.post(
        "/resolve", json={"id": widgets["promise_id"], "value": 42, "token": widgets["callback_signature"]}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": widgets["promise_id"], "state": "resolved", "already_settled": False}
    done = service.wait_for("fixed")
    assert (done["status"], done["result"]) == ("done", 42), done


def test_a_repair_is_refused_to_whoever_did_not_start_the_run_and_once_it_ended(
    repairable: tuple[Service, RepairableJobs],
) -> None:
    service, jobs = repairable
    start(service, "mine")
    databricks = databricks_run(service, "mine")["run_id"]
    fail_and_stay_waiting(service, jobs, "mine", databricks)

    by_bob = repair(service, "mine", BOB)
    assert by_bob.status_code == 403, by_bob.text
    assert "only they or one of DARA_ADMINS may repair it" in by_bob.json()["detail"]
    assert not jobs.runs[databricks].active

    assert repair(service, "mine").status_code == 200
    widgets = jobs.runs[databricks].params
    service.http.post(
        "/resolve", json={"id": widgets["promise_id"], "value": 1, "token": widgets["callback_signature"]}
    ).raise_for_status()
    assert service.wait_for("mine")["status"] == "done"
    after = repair(service, "mine")
    assert after.status_code == 409, after.text
    assert after.json()["detail"] == "run 'mine' cannot be repaired: it is already done; start it again instead"
    assert repair(service, "nobody").status_code == 404


def test_a_running_databricks_run_is_not_repaired(repairable: tuple[Service, RepairableJobs]) -> None:
    service, jobs = repairable
    start(service, "busy")
    databricks = databricks_run(service, "busy")["run_id"]

    refused = repair(service, "busy")

    assert refused.status_code == 409, refused.text
    assert f"Databricks run {databricks} is RUNNING: only a run that ended can be repaired" in refused.json()["detail"]
    assert [r for path in REPAIR_PATHS for r in jobs.double.requests_to("POST", path)] == []


def test_without_a_repair_window_a_failed_run_fails_at_once(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on_double(databricks_double, tmp_path, monkeypatch) as (service, jobs):
        start(service, "unrepaired")
        databricks = databricks_run(service, "unrepaired")["run_id"]
        jobs.end(databricks, "FAILED", message="Cluster lost")

        run = service.wait_for("unrepaired", timeout=30)

        assert run["status"] == "failed" and "ended FAILED without calling back" in run["error"], run
        refused = repair(service, "unrepaired")
        assert refused.status_code == 409, refused.text


def test_the_embedded_workspace_refuses_repairs(service: Service) -> None:
    started = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "embedded-repair"})
    assert started.status_code == 201, started.text

    refused = service.http.post("/runs/embedded-repair/repair")

    assert refused.status_code == 409, refused.text
    assert "the embedded workspace cannot repair runs" in refused.json()["detail"]
