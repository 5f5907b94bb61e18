"""POST /jobs/deploy only ever changes jobs DARA created, and only writes under
DARA_NOTEBOOK_DIR. Real HTTP, the real SDK and the embedded workspace (brickhouse keeps
job tags as the Jobs API does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import jobs

from app.workspace.deploy import demo_job_settings
from steps.jobs import JobNotManaged, find_job_id, upsert_job
from steps.retryable import is_transient
from tests.harness import Service, make_settings, running_service

NOTEBOOK = "# Databricks notebook source\nprint('hello')\n"
COMPUTE = {"sl": {"serverless": {"environment_version": "1"}}}
TASKS = [{"name": "hello", "file": "hello.py", "compute": "sl", "parameters": {"who": "world"}}]
NOTEBOOK_DIR = "/Workspace/Shared/dara"  # the default DARA_NOTEBOOK_DIR


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs-security")


@pytest.fixture(scope="module")
def service(state: Path) -> Iterator[Service]:
    """Embedded defaults, the demo deployed on start, and a one-task graph under the root."""
    root = state / "jobs"
    (root / "hello").mkdir(parents=True)
    (root / "hello" / "hello.py").write_text(NOTEBOOK)
    with running_service(make_settings(state / "dara", jobs_root=root)) as svc:
        yield svc


def deploy(service: Service, job_name: str, run_id: str | None = None, **body: object) -> httpx.Response:
    payload = {"name": job_name, "folder": "hello", "compute": COMPUTE, "tasks": TASKS, "run": False}
    return service.http.post("/jobs/deploy", json=payload | ({"id": run_id} if run_id else {}) | body)


def foreign_job(w: WorkspaceClient, name: str) -> int:
    """A job someone else made, without DARA's tag."""
    settings = demo_job_settings(name, f"{NOTEBOOK_DIR}/dara_demo.py", cluster=None)
    fields = {key: getattr(settings, key) for key in settings.as_dict()}
    job_id = w.jobs.create(**fields).job_id
    assert job_id is not None
    return job_id


def test_the_demo_job_is_dara_managed(service: Service) -> None:
    w = service.runtime.workspace
    job_id = find_job_id(w, service.runtime.settings.demo_job_name)

    assert job_id is not None
    assert (w.jobs.get(job_id).settings.tags or {}).get("dara_managed") == "true"  # type: ignore[union-attr]


def test_deploy_over_a_job_dara_did_not_create_is_refused_and_leaves_it_alone(service: Service) -> None:
    w = service.runtime.workspace
    job_id = foreign_job(w, "theirs")
    before = w.jobs.get(job_id).settings

    response = deploy(service, "theirs", "sec-theirs", run=True)

    assert response.status_code == 409, response.text
    assert response.json()["detail"] == (
        f"job {job_id} 'theirs' exists and DARA did not create it; pick another name, or tag it "
        "dara_managed=true to let DARA manage it"
    )
    assert w.jobs.get(job_id).settings == before
    assert service.http.get("/runs/sec-theirs").status_code == 404  # no run started
    with pytest.raises(NotFound):  # and nothing uploaded
        w.workspace.get_status(f"{NOTEBOOK_DIR}/theirs")


def test_the_upsert_step_refuses_a_job_dara_did_not_create_on_its_own(service: Service) -> None:
    """The route checks first; the step checks again, for a job created in between."""
    w = service.runtime.workspace
    job_id = foreign_job(w, "theirs-too")
    before = w.jobs.get(job_id).settings
    wanted = demo_job_settings("theirs-too", f"{NOTEBOOK_DIR}/dara_demo.py", cluster=None)
    wanted.max_concurrent_runs = 1  # a change the step would make if it did not check

    with pytest.raises(JobNotManaged, match=rf"^job {job_id} 'theirs-too' exists and DARA did not create it") as raised:
        upsert_job(w, wanted)

    assert not is_transient(raised.value)
    assert w.jobs.get(job_id).settings == before


def test_a_job_tagged_dara_managed_by_its_owner_is_managed(service: Service) -> None:
    w = service.runtime.workspace
    job_id = foreign_job(w, "handed-over")
    settings = w.jobs.get(job_id).settings
    assert settings is not None
    settings.tags = {"dara_managed": "true", "team": "data"}
    w.jobs.reset(job_id, settings)

    response = deploy(service, "handed-over", "sec-handed-over")

    assert response.status_code == 201, response.text
    run = service.wait_for("sec-handed-over")
    assert run["status"] == "done", run["error"]
    assert run["result"] == {"job_id": job_id}


def test_deploying_twice_updates_the_job_dara_created_and_keeps_its_tag(service: Service) -> None:
    w = service.runtime.workspace
    assert deploy(service, "ours", "sec-ours-1").status_code == 201
    first = service.wait_for("sec-ours-1")
    assert first["status"] == "done", first["error"]
    job_id = first["result"]["job_id"]
    tasks = [TASKS[0] | {"parameters": {"who": "again"}}]

    response = deploy(service, "ours", "sec-ours-2", tasks=tasks)

    assert response.status_code == 201, response.text
    second = service.wait_for("sec-ours-2")
    assert second["status"] == "done", second["error"]
    assert second["result"]["job_id"] == job_id
    settings = w.jobs.get(job_id).settings
    assert settings is not None and settings.tags == {"dara_managed": "true"}
    [task] = settings.tasks or []
    assert task.notebook_task.base_parameters == {"who": "again"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"workspace_dir": "/Users/victim@example.com/jobs"},
            "workspace_dir '/Users/victim@example.com/jobs' is outside",
        ),
        ({"workspace_dir": f"{NOTEBOOK_DIR}/../../Users/v"}, "must be an absolute path without '..'"),
        ({"workspace_dir": f"{NOTEBOOK_DIR}-evil/x"}, "is outside"),
        ({"workspace_dir": NOTEBOOK_DIR}, "is outside"),  # the root itself: the demo's notebooks live there
        ({"workspace_dir": "relative/dir"}, "must be an absolute path"),
        ({"name": "../../../Users/v"}, "must be an absolute path without '..'"),  # the default dir is built from it
    ],
    ids=["users", "dotdot", "prefix", "root", "relative", "name"],
)
def test_a_workspace_dir_outside_the_notebook_dir_is_refused(
    service: Service, request: pytest.FixtureRequest, body: dict[str, str], says: str
) -> None:
    run_id = f"sec-wsdir-{request.node.callspec.id}"

    response = deploy(service, "wsdir", run_id, **body)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert says in detail and NOTEBOOK_DIR in detail, detail
    assert service.http.get(f"/runs/{run_id}").status_code == 404


def test_a_workspace_dir_under_the_notebook_dir_is_normalized_and_used(service: Service) -> None:
    response = deploy(service, "nested", "sec-nested", workspace_dir=f"{NOTEBOOK_DIR}//teams/./nested/")

    assert response.status_code == 201, response.text
    assert response.json()["params"]["files"] == {"hello.py": f"{NOTEBOOK_DIR}/teams/nested/hello.py"}
    assert service.wait_for("sec-nested")["status"] == "done"


def test_the_demo_job_survives_a_restart_on_the_same_workspace(tmp_path: Path) -> None:
    """Created by DARA, so tagged: the next start finds it managed and leaves it as it is."""
    settings = make_settings(tmp_path)
    with running_service(settings) as first:
        w = first.runtime.workspace
        job_id = find_job_id(w, settings.demo_job_name)
        before = w.jobs.get(job_id).settings  # type: ignore[arg-type]

    with running_service(settings) as second:
        w = second.runtime.workspace
        assert find_job_id(w, settings.demo_job_name) == job_id
        assert w.jobs.get(job_id).settings == before  # type: ignore[arg-type]
        assert isinstance(before, jobs.JobSettings) and (before.tags or {}).get("dara_managed") == "true"


def test_an_untagged_demo_job_from_an_older_dara_is_adopted_on_start(tmp_path: Path) -> None:
    """DARA_DEMO_JOB_NAME is the operator's own setting: a demo job made before DARA tagged
    its jobs is taken over (and tagged) at start, instead of stopping the service."""
    (tmp_path / "jobs" / "hello").mkdir(parents=True)
    (tmp_path / "jobs" / "hello" / "hello.py").write_text(NOTEBOOK)
    settings = make_settings(tmp_path / "dara", jobs_root=tmp_path / "jobs")
    with running_service(settings) as first:
        w = first.runtime.workspace
        old = find_job_id(w, settings.demo_job_name)
        assert old is not None
        untagged = w.jobs.get(old).settings
        assert untagged is not None
        untagged.tags = None  # as DARA made it before it tagged its jobs
        w.jobs.reset(old, untagged)
        assert not (w.jobs.get(old).settings.tags or {})  # type: ignore[union-attr]

    with running_service(settings) as second:
        w = second.runtime.workspace
        adopted = w.jobs.get(old).settings
        found = find_job_id(w, settings.demo_job_name)
        refused = deploy(second, settings.demo_job_name, run_id=None)

    assert found == old
    assert adopted is not None and (adopted.tags or {}).get("dara_managed") == "true"
    assert refused.status_code == 201, refused.text  # now DARA's, so a deploy may update it
