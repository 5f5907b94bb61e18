"""No caller can make DARA read a host path: not through POST /runs, not through
/jobs/deploy's folder or task files (symlinks included), not through an upload.

Real HTTP against the service on the embedded workspace; the upload's success path runs
against the recorded-shape HTTP double, since the local workspace has no Files API.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Generator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.durable import Context, pipeline
from scripts.databricks_double import DatabricksDouble, no_content
from steps.uploaded_files import HANDLE_PATTERN, UnknownUpload, UploadStore
from steps.workspace_files import upload_task_files
from tests.harness import Service, make_settings, running_service
from tests.pipelines_for_tests import WITH_TEST_PIPELINES

NOTEBOOK = "# Databricks notebook source\nprint('hello')\n"
SECRET = "# Databricks notebook source\nSECRET = 'host file outside DARA_JOBS_ROOT'\n"
COMPUTE = "sl:\n  serverless:\n    environment_version: '1'\n"
TASKS = "- name: hello\n  file: hello.py\n  compute: sl\n"
VOLUME_FILE = "/Volumes/main/default/landing/orders.csv"
BYPASS = "test_bypass_upload_task_files"


def graph(folder: Path, tasks: str = TASKS) -> Path:
    folder.mkdir(parents=True)
    (folder / "compute.yaml").write_text(COMPUTE)
    (folder / "tasks.yaml").write_text(tasks)
    (folder / "hello.py").write_text(NOTEBOOK)
    return folder


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """DARA_JOBS_ROOT with one sound graph and several that reach outside it by symlink."""
    base = tmp_path_factory.mktemp("host-paths")
    outside = graph(base / "outside")  # a sound task graph, but not under the root
    (outside / "secret.py").write_text(SECRET)
    root = base / "jobs"
    graph(root / "sound")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    sneaky = graph(root / "sneaky", tasks=TASKS + "- name: leak\n  file: leak.py\n  compute: sl\n")
    (sneaky / "leak.py").symlink_to(outside / "secret.py")
    tasks_out = root / "tasks_out"
    tasks_out.mkdir()
    (tasks_out / "compute.yaml").write_text(COMPUTE)
    (tasks_out / "tasks.yaml").symlink_to(outside / "tasks.yaml")
    (tasks_out / "hello.py").write_text(NOTEBOOK)
    return {"base": base, "root": root, "outside": outside, "state": base / "state"}


@pytest.fixture(scope="module")
def service(layout: dict[str, Path]) -> Iterator[Service]:
    """The service on embedded defaults, with the layout's root as DARA_JOBS_ROOT.

    It also runs a test-only pipeline that hands caller input straight to the
    upload_task_files step, as a route with a bug would: the step must refuse on its own.
    """

    def bypass(ctx: Context, folder: str, files: dict[str, str]) -> Generator[Any, Any, Any]:
        return (yield ctx.run(upload_task_files, folder, files))

    bypass.__name__ = bypass.__qualname__ = BYPASS
    settings = make_settings(layout["state"], deploy_on_start=False, jobs_root=layout["root"])
    with running_service(settings, pipelines=(*WITH_TEST_PIPELINES, pipeline(name=BYPASS)(bypass))) as svc:
        yield svc


def assert_no_host_path(text: str, layout: dict[str, Path]) -> None:
    for path in (layout["base"], layout["base"].resolve()):
        assert str(path) not in text, text


def start(service: Service, run_id: str, pipeline_name: str, **params: Any) -> dict[str, Any]:
    response = service.http.post("/runs", json={"pipeline": pipeline_name, "id": run_id, "params": params})
    assert response.status_code == 201, response.text
    return response.json()


# -- POST /runs ---------------------------------------------------------------------------


def test_post_runs_refuses_deploy_and_run_and_points_to_jobs_deploy(service: Service) -> None:
    """The original attack: the host environment copied into the workspace."""
    params = {"folder": "/", "files": {"proc/self/environ": "/Workspace/Shared/x/env.py"}, "job": {}}

    response = service.http.post("/runs", json={"pipeline": "deploy_and_run", "id": "sec-env", "params": params})

    assert response.status_code == 422, response.text
    assert "POST /jobs/deploy" in response.json()["detail"]
    assert service.http.get("/runs/sec-env").status_code == 404


def test_post_runs_refuses_a_parameter_only_dara_sets_and_starts_the_pipeline_without_it(service: Service) -> None:
    start = {"pipeline": "has_a_server_only_param", "id": "sec-server-param"}

    refused = service.http.post("/runs", json={**start, "params": {"name": "x", "root": "/etc"}})

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == (
        "'root' of pipeline 'has_a_server_only_param' is set only by DARA itself; leave it out"
    )
    assert service.http.get("/runs/sec-server-param").status_code == 404
    assert service.http.post("/runs", json={**start, "params": {"name": "x"}}).status_code == 201
    assert service.wait_for("sec-server-param")["result"] == "x in /srv/dara"


def test_pipelines_say_which_are_started_only_by_dara(service: Service) -> None:
    listed = {p["name"]: p for p in service.http.get("/pipelines").json()}

    assert listed["deploy_and_run"]["server_only"] == "POST /jobs/deploy"
    assert listed["upload_and_process"]["server_only"] is None
    assert listed["upload_and_process"]["params"]["properties"]["upload"]["pattern"] == HANDLE_PATTERN


@pytest.mark.parametrize("upload", ["/etc/passwd", "../x", "a" * 31, "A" * 32, "0" * 32 + "/../x", "0" * 32 + "\n"])
def test_post_runs_refuses_an_upload_that_is_not_a_handle(service: Service, upload: str) -> None:
    body = {
        "pipeline": "upload_and_process",
        "id": "sec-not-a-handle",
        "params": {"upload": upload, "volume_path": VOLUME_FILE, "job": "j"},
    }

    response = service.http.post("/runs", json=body)

    assert response.status_code == 422, response.text
    assert "upload: String should match pattern" in response.json()["detail"]
    assert service.http.get("/runs/sec-not-a-handle").status_code == 404


def test_an_unknown_handle_fails_the_run_without_naming_a_host_path(service: Service, layout: dict[str, Path]) -> None:
    handle = "0123456789abcdef" * 2

    start(service, "sec-unknown", "upload_and_process", upload=handle, volume_path=VOLUME_FILE, job="j")
    run = service.wait_for("sec-unknown")

    assert run["status"] == "failed"
    assert f"no upload '{handle}': it was removed after its run, or DARA never issued it" in run["error"]
    assert_no_host_path(json.dumps(run), layout)


def test_a_handle_issued_to_another_run_is_unknown_to_this_one(service: Service, layout: dict[str, Path]) -> None:
    """Run params are readable by every API user: a handle read there is no key to the file."""
    store = service.runtime.uploads
    handle = store.save(io.BytesIO(b"theirs"), "sec-owner")

    start(service, "sec-thief", "upload_and_process", upload=handle, volume_path=VOLUME_FILE, job="j")
    run = service.wait_for("sec-thief")

    assert run["status"] == "failed" and f"no upload '{handle}'" in run["error"]
    assert store.path(handle, "sec-owner").read_bytes() == b"theirs"  # still there for its run
    assert store.discard(handle, "sec-owner")


# -- POST /jobs/deploy and GET /jobs/preview --------------------------------------------------


def test_a_sound_folder_deploys(service: Service) -> None:
    """The baseline the refusals below are measured against."""
    response = service.http.post(
        "/jobs/deploy", json={"name": "sec-sound", "folder": "sound", "run": False, "id": "sec-sound"}
    )

    assert response.status_code == 201, response.text
    assert response.json()["params"]["folder"] == "sound"  # relative: no host path in the run
    run = service.wait_for("sec-sound")
    assert run["status"] == "done", run["error"]


@pytest.mark.parametrize("route", ["deploy", "preview"])
def test_a_folder_symlinked_out_of_the_root_is_refused(service: Service, layout: dict[str, Path], route: str) -> None:
    if route == "deploy":
        response = service.http.post("/jobs/deploy", json={"name": "sec-escape", "folder": "escape", "run": False})
    else:
        response = service.http.get("/jobs/preview", params={"folder": "escape"})

    assert response.status_code == 422, response.text
    assert "folder 'escape' is outside DARA_JOBS_ROOT" in response.text
    assert_no_host_path(response.text, layout)


def test_an_absolute_or_dotted_folder_is_refused(service: Service, layout: dict[str, Path]) -> None:
    for folder in (str(layout["outside"]), "../outside", "sound/../../outside"):
        response = service.http.post("/jobs/deploy", json={"name": "sec-abs", "folder": folder, "run": False})
        assert response.status_code == 422, (folder, response.text)
        assert "is outside DARA_JOBS_ROOT" in response.text


def test_a_folder_name_the_file_system_refuses_is_a_422_without_the_path(
    service: Service, layout: dict[str, Path]
) -> None:
    response = service.http.get("/jobs/preview", params={"folder": "x" * 300})

    assert response.status_code == 422, response.text
    assert "File name too long" in response.text
    assert_no_host_path(response.text, layout)


def test_a_task_file_symlinked_out_of_the_root_is_refused(service: Service, layout: dict[str, Path]) -> None:
    response = service.http.post("/jobs/deploy", json={"name": "sec-sneaky", "folder": "sneaky", "id": "sec-sneaky"})

    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]["problems"]
    assert problem.startswith("task 'leak': task file 'leak.py' of folder 'sneaky' is outside DARA_JOBS_ROOT")
    assert service.http.get("/runs/sec-sneaky").status_code == 404
    assert_no_host_path(response.text, layout)


def test_a_task_list_symlinked_out_of_the_root_is_refused(service: Service, layout: dict[str, Path]) -> None:
    response = service.http.get("/jobs/preview", params={"folder": "tasks_out"})

    assert response.status_code == 422, response.text
    assert "task file 'tasks.yaml' of folder 'tasks_out' is outside DARA_JOBS_ROOT" in response.text


def test_a_task_file_with_dotdot_in_the_request_is_refused(service: Service) -> None:
    tasks = [{"name": "leak", "file": "../outside/secret.py", "compute": "sl"}]
    compute = {"sl": {"serverless": {"environment_version": "1"}}}

    response = service.http.post(
        "/jobs/deploy", json={"name": "sec-dotdot", "folder": "sound", "compute": compute, "tasks": tasks}
    )

    assert response.status_code == 422, response.text
    assert "must be a path inside the task-graph folder" in response.text


# -- the upload_task_files step on its own ------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "files", "says"),
    [
        (".", {"../outside/secret.py": "/Workspace/Shared/dara/x/secret.py"}, "is outside DARA_JOBS_ROOT"),
        ("sneaky", {"leak.py": "/Workspace/Shared/dara/x/leak.py"}, "is outside DARA_JOBS_ROOT"),
        ("sound", {"/proc/self/environ": "/Workspace/Shared/dara/x/env.py"}, "is outside DARA_JOBS_ROOT"),
        ("/", {"proc/self/environ": "/Workspace/Shared/dara/x/env.py"}, "folder '/' is outside DARA_JOBS_ROOT"),
        ("escape", {"secret.py": "/Workspace/Shared/dara/x/secret.py"}, "folder 'escape' is outside DARA_JOBS_ROOT"),
        (
            "sound",
            {"hello.py": "/Users/victim@example.com/hello.py"},
            "is outside /Workspace/Shared/dara (DARA_NOTEBOOK_DIR)",
        ),
        ("sound", {"hello.py": "/Workspace/Shared/dara/../../Users/v/hello.py"}, "without '..'"),
        ("sound", {"hello.py": "/Workspace/Shared/dara-evil/hello.py"}, "is outside /Workspace/Shared/dara"),
    ],
    ids=[
        "dotdot-key",
        "symlinked-key",
        "absolute-key",
        "absolute-folder",
        "symlinked-folder",
        "remote-outside",
        "remote-dotdot",
        "remote-prefix",
    ],
)
def test_the_step_refuses_paths_out_of_either_root_on_its_own(
    service: Service,
    layout: dict[str, Path],
    request: pytest.FixtureRequest,
    folder: str,
    files: dict[str, str],
    says: str,
) -> None:
    """A pipeline handing caller input straight to the step (as a buggy route would)."""
    run_id = f"sec-step-{request.node.callspec.id}"

    start(service, run_id, BYPASS, folder=folder, files=files)
    run = service.wait_for(run_id)

    assert run["status"] == "failed"
    assert run["error"].startswith("upload_task_files: ") and says in run["error"], run["error"]
    assert "SECRET" not in json.dumps(run)
    assert_no_host_path(json.dumps(run), layout)


# -- POST /runs/upload_and_process ----------------------------------------------------------------


@pytest.fixture
def on_double(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The service on a "real" workspace (the double), which has the Files API."""
    monkeypatch.setenv("DATABRICKS_TOKEN", "test")
    databricks_double.route("PUT", "/api/2.0/fs/files{path:path}", no_content())
    settings = make_settings(
        tmp_path, databricks_host=databricks_double.url, deploy_on_start=False, databricks_retry_timeout=5
    )
    with running_service(settings) as svc:
        yield svc


def test_the_upload_route_hands_the_run_a_handle_and_keeps_no_file(
    on_double: Service, databricks_double: DatabricksDouble, tmp_path: Path
) -> None:
    data = b"id,amount\n1,9.99\n" * 50
    form = {"volume_path": VOLUME_FILE, "job": "4242", "id": "sec-upload"}

    response = on_double.http.post("/runs/upload_and_process", data=form, files={"file": ("orders.csv", data)})

    assert response.status_code == 201, response.text
    assert str(tmp_path) not in response.text
    handle = response.json()["params"]["upload"]
    assert re.fullmatch(HANDLE_PATTERN, handle)
    run = on_double.wait_for("sec-upload")  # the double has no job 4242: the run fails after the upload
    names = [step["name"] for step in run["steps"] if step["kind"] == "step"]
    assert names[:2] == ["upload_saved_file", "discard_upload"], run
    assert run["steps"][0]["result"] == {"path": VOLUME_FILE, "size": len(data)}
    assert databricks_double.only_request("PUT", "/api/2.0/fs/files{path:path}").body == data
    assert list((tmp_path / "uploads").iterdir()) == []  # gone once the volume has it
    assert str(tmp_path) not in json.dumps(run)

    again = on_double.http.post("/runs/upload_and_process", data=form, files={"file": ("orders.csv", b"other")})

    assert again.status_code == 200, again.text
    assert again.json()["params"]["upload"] == handle
    assert list((tmp_path / "uploads").iterdir()) == []  # the repeat's copy is discarded at once
    assert len(databricks_double.requests_to("PUT", "/api/2.0/fs/files{path:path}")) == 1


# -- the store itself ----------------------------------------------------------------------------


def test_the_store_takes_nothing_but_a_handle_and_purges_what_runs_never_took(tmp_path: Path) -> None:
    """What the service does on start (Runtime.start) with uploads older than DARA_RUN_DEADLINE."""
    state = tmp_path / "state"
    store = UploadStore(state / "uploads")
    old, fresh = store.save(io.BytesIO(b"old"), "r1"), store.save(io.BytesIO(b"fresh"), "r2")
    week_ago = time.time() - timedelta(days=7).total_seconds()
    os.utime(store.path(old, "r1"), (week_ago, week_ago))
    for handle in ("../../etc/passwd", "/etc/passwd", old.upper(), old + "/", ""):
        with pytest.raises(ValueError, match="is not an upload handle"):
            store.path(handle, "r1")

    settings = make_settings(state, deploy_on_start=False, run_deadline=timedelta(days=1))
    with running_service(settings):
        pass

    with pytest.raises(UnknownUpload):
        store.path(old, "r1")
    assert store.path(fresh, "r2").read_bytes() == b"fresh"
