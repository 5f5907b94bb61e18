"""The durable notebook loop through real HTTP: service + Resonate + the embedded
workspace running the real demo notebook, which calls back over HTTP. Every test runs
on both backends: the in-process server and Postgres (resonate-pg)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.settings import PROJECT_ROOT
from tests.harness import Service, make_settings, running_service
from tests.postgres import BACKENDS, backend_settings


@pytest.fixture(scope="module", params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service on embedded defaults, on each backend in turn."""
    settings = make_settings(tmp_path_factory.mktemp("loop"), **backend_settings(request, request.param))
    with running_service(settings) as svc:
        yield svc


def demo_run(service: Service, run_id: str, **params: str) -> dict:
    body = {"pipeline": "notebook_job", "id": run_id, "params": {"job": "dara-demo", "params": params}}
    response = service.http.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def workspace_runs(service: Service) -> list[int]:
    w = service.runtime.workspace
    job_id = next(job.job_id for job in w.jobs.list(name="dara-demo"))
    return [run.run_id for run in w.jobs.list_runs(job_id=job_id)]


def test_run_completes_with_the_notebooks_value(service: Service) -> None:
    started = demo_run(service, "loop-ok", name="dara", count="4")
    assert started["pipeline"] == "notebook_job"
    assert started["status"] in ("running", "waiting")

    run = service.wait_for("loop-ok")

    assert run["status"] == "done", run
    assert run["result"] == {"greeting": "hello dara", "sum_of_squares": 14}
    work = [(s["id"], s["name"], s["state"]) for s in run["steps"] if s["kind"] != "watcher"]
    assert work == [
        ("loop-ok:1", "callback", "resolved"),
        ("loop-ok:2", "run_job", "resolved"),
        ("loop-ok:4", "notify", "resolved"),
    ]
    watchers = [s["name"] for s in run["steps"] if s["kind"] == "watcher"]
    assert watchers == ["dara.watch_run"]  # the in-process server times the wait out itself
    assert run["progress"] == {"done": 3, "seen": 3}
    [databricks] = run["databricks_runs"]
    assert databricks["url"].endswith(f"/jobs/{databricks['job_id']}/runs/{databricks['run_id']}")
    assert all(s["finished_at"] >= s["started_at"] for s in run["steps"] if s["kind"] != "watcher")


def test_failing_notebook_fails_the_run_with_its_error(service: Service) -> None:
    demo_run(service, "loop-fail", fail="disk full")

    run = service.wait_for("loop-fail")

    assert run["status"] == "failed"
    assert "asked to fail: disk full" in run["error"]
    callback = run["steps"][0]
    assert callback["state"] == "rejected"
    assert "ValueError: asked to fail: disk full" in callback["error"]


def test_same_id_twice_starts_one_pipeline_and_one_databricks_run(service: Service) -> None:
    before = set(workspace_runs(service))
    body = {"pipeline": "notebook_job", "id": "loop-twice", "params": {"job": "dara-demo"}}

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: service.http.post("/runs", json=body).status_code, range(4)))
    run = service.wait_for("loop-twice")
    again = service.http.post("/runs", json=body)

    assert 201 in statuses and set(statuses) <= {200, 201}
    assert again.status_code == 200 and again.json()["status"] == "done"
    assert run["status"] == "done"
    new_runs = set(workspace_runs(service)) - before
    assert new_runs == {run["databricks_runs"][0]["run_id"]}


def test_original_query_form_and_trigger_script(service: Service) -> None:
    first = service.http.get("/run", params={"id": "loop-get", "url": service.url})
    assert first.status_code == 200
    assert first.json()["id"] == "loop-get" and first.json()["pipeline"] == "notebook_job"

    trigger = [sys.executable, str(PROJECT_ROOT / "scripts" / "trigger.py"), "--service", service.url]
    waited = subprocess.run([*trigger, "--id", "loop-get", "--wait"], capture_output=True, text=True, timeout=120)
    again = subprocess.run([*trigger, "--id", "loop-get"], capture_output=True, text=True, timeout=60)

    assert waited.returncode == 0, waited.stderr
    assert "done" in waited.stdout and "hello world" in waited.stdout
    assert "done" in again.stdout


def test_trigger_finds_the_service_from_dara_port_or_dara_url(service: Service) -> None:
    """As the service itself reads DARA_PORT, so does the script; DARA_URL wins over it."""
    script = [sys.executable, str(PROJECT_ROOT / "scripts" / "trigger.py"), "--id", "loop-get-env"]
    port = service.url.rsplit(":", 1)[1]
    base = {k: v for k, v in os.environ.items() if k not in ("DARA_URL", "DARA_PORT")}

    by_port = subprocess.run(script, env=base | {"DARA_PORT": port}, capture_output=True, text=True, timeout=60)
    by_url = subprocess.run(
        script, env=base | {"DARA_PORT": "1", "DARA_URL": service.url}, capture_output=True, text=True, timeout=60
    )

    assert by_port.returncode == 0, by_port.stderr
    assert by_url.returncode == 0, by_url.stderr
    assert service.http.get("/runs/loop-get-env").status_code == 200


def test_trigger_starts_any_pipeline_with_params(service: Service) -> None:
    trigger = [sys.executable, str(PROJECT_ROOT / "scripts" / "trigger.py"), "--service", service.url]
    started = subprocess.run(
        [
            *trigger,
            "--id",
            "loop-trigger",
            "--pipeline",
            "notebook_job",
            "--param",
            "job=dara-demo",
            "--param",
            'params={"name": "cli"}',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert "working on it" in started.stdout
    assert service.wait_for("loop-trigger")["result"]["greeting"] == "hello cli"
