"""The library pipelines end to end: the service on a real port, configured for a "real"
workspace that is the recorded-shape HTTP double, driven through POST /runs, GET /runs
and POST /resolve. The test plays the notebook: it reads the callback widgets from the
run-now request the double recorded and settles the promise with them."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pipelines.lakeflow_refresh
from scripts.databricks_double import (
    DatabricksDouble,
    RecordedRequest,
    no_content,
    recorded_pipeline_event,
    recorded_run,
    recorded_start_update,
    recorded_statement,
    recorded_update,
)
from steps.uploaded_files import HANDLE_PATTERN
from tests.harness import Service, make_settings, running_service

JOBS_LIST = "/api/2.2/jobs/list"
RUN_NOW = "/api/2.2/jobs/run-now"
GET_RUN = "/api/2.2/jobs/runs/get"
FILES = "/api/2.0/fs/files{path:path}"
STATEMENTS = "/api/2.0/sql/statements"
UPDATES = "/api/2.0/pipelines/{pipeline_id}/updates"
UPDATE = "/api/2.0/pipelines/{pipeline_id}/updates/{update_id}"
EVENTS = "/api/2.0/pipelines/{pipeline_id}/events"
SYNC = "/api/2.0/vector-search/indexes/{index_name}/sync"

JOB = "process-orders"
JOB_ID = 4242
VOLUME_FILE = "/Volumes/main/default/landing/orders.csv"
PIPELINE_ID = "a1b2c3d4-pipeline"
UPDATE_ID = "9f8e7d-update"


class Jobs:
    """The jobs API as the service behaves: one job by name, one run per idempotency token."""

    def __init__(self, double: DatabricksDouble) -> None:
        self.double = double
        self.runs: dict[str, int] = {}
        self.lock = threading.Lock()
        double.route("GET", JOBS_LIST, self.list_jobs)
        double.route("POST", RUN_NOW, self.run_now)
        double.route("GET", GET_RUN, self.get_run)

    def list_jobs(self, request: RecordedRequest) -> dict[str, Any]:
        if request.query.get("name") != [JOB]:
            return {"has_more": False}
        job = {
            "job_id": JOB_ID,
            "creator_user_name": "dara@example.com",
            "created_time": 1_700_000_000_000,
            "settings": {"name": JOB, "format": "MULTI_TASK", "max_concurrent_runs": 1},
        }
        return {"jobs": [job], "has_more": False}

    def run_now(self, request: RecordedRequest) -> dict[str, Any]:
        with self.lock:
            run_id = self.runs.setdefault(request.json["idempotency_token"], 7700 + len(self.runs))
        return {"run_id": run_id, "number_in_job": run_id}

    def get_run(self, request: RecordedRequest) -> dict[str, Any]:
        """Still running: the notebook (the test) has not finished."""
        run_id = int(request.query["run_id"][0])
        run = recorded_run(
            host=self.double.url,
            job_id=JOB_ID,
            run_id=run_id,
            run_name=JOB,
            notebook_path="/Workspace/Shared/dara/process",
            life_cycle_state="RUNNING",
        )
        return run | {"run_type": "JOB_RUN", "job_run_id": run_id}


@pytest.fixture
def service(databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The service on a "real" workspace (the double), found through unified auth."""
    monkeypatch.setenv("DATABRICKS_TOKEN", "test")
    monkeypatch.setattr(pipelines.lakeflow_refresh, "BACKOFF", (0.01, 0.02, 0.05))
    Jobs(databricks_double)
    settings = make_settings(
        tmp_path,
        databricks_host=databricks_double.url,
        deploy_on_start=False,
        databricks_retry_timeout=5,
    )
    with running_service(settings) as svc:
        yield svc


def start(service: Service, run_id: str, pipeline: str, **params: Any) -> dict[str, Any]:
    body = {"pipeline": pipeline, "id": run_id, "params": params}
    response = service.http.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def play_notebook(
    service: Service, double: DatabricksDouble, run_id: str, value: Any, timeout: float = 30
) -> dict[str, str]:
    """Once the run has started its job, call back as the notebook's callback cell would.

    Returns the notebook parameters the job was started with.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = service.http.get(f"/runs/{run_id}").raise_for_status().json()
        if run["status"] not in ("running", "waiting"):
            raise AssertionError(f"run {run_id} ended before its job started: {run}")
        if any(step["name"] == "run_job" and step["state"] == "resolved" for step in run["steps"]):
            break
        time.sleep(0.02)
    else:
        raise TimeoutError(f"run {run_id} did not start its job in {timeout}s")
    [callback] = [step for step in run["steps"] if step["kind"] == "callback"]
    request = double.only_request("POST", RUN_NOW)
    assert request.json["job_id"] == JOB_ID
    assert request.json["idempotency_token"].startswith("dara-")
    widgets: dict[str, str] = request.json["notebook_params"]
    assert widgets["promise_id"] == callback["id"]
    assert widgets["callback_url"] == service.url
    body = {"id": widgets["promise_id"], "value": value, "token": widgets["callback_signature"]}
    resolved = service.http.post("/resolve", json=body)
    assert resolved.json() == {"id": callback["id"], "state": "resolved", "already_settled": False}
    return widgets


def step_names(run: dict[str, Any]) -> list[str]:
    return [step["name"] for step in run["steps"] if step["kind"] not in ("watcher", "sleep")]


def position(double: DatabricksDouble, method: str, pattern: str) -> int:
    """Where the (single) request to a route came in the double's record."""
    return double.requests.index(double.only_request(method, pattern))


# -- upload_and_process --------------------------------------------------------------------


@pytest.mark.parametrize("index", [None, "main.default.orders_index"])
def test_upload_and_process_uploads_runs_the_job_on_the_volume_file_and_syncs(
    service: Service, databricks_double: DatabricksDouble, tmp_path: Path, index: str | None
) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) has no
    Files API and no Vector Search.

    The job must see the file where it landed in the volume, not the service's local path,
    and the index is synced only after the notebook called back, so it sees what the job wrote.
    """
    databricks_double.route("PUT", FILES, no_content())
    databricks_double.route("POST", SYNC, {})
    data = b"id,amount\n1,9.99\n2,\xe2\x82\xac5\n" * 100
    run_id = f"upload-{'index' if index else 'plain'}"
    handle = service.runtime.uploads.save(io.BytesIO(data), run_id)  # as the upload route does

    start(
        service,
        run_id,
        "upload_and_process",
        upload=handle,
        volume_path=VOLUME_FILE,
        job=JOB,
        params={"day": "mon"},
        index=index,
    )
    widgets = play_notebook(service, databricks_double, run_id, {"loaded": 200})
    run = service.wait_for(run_id)

    assert (run["status"], run["result"]) == ("done", {"loaded": 200}), run
    put = databricks_double.only_request("PUT", FILES)
    assert put.path == f"/api/2.0/fs/files{VOLUME_FILE}"
    assert put.body == data
    assert widgets["file"] == VOLUME_FILE and widgets["day"] == "mon"
    assert position(databricks_double, "PUT", FILES) < position(databricks_double, "POST", RUN_NOW)
    syncs = databricks_double.requests_to("POST", SYNC)
    assert list((tmp_path / "uploads").iterdir()) == []  # discarded once in the volume
    if index is None:
        assert syncs == []
        assert step_names(run) == ["upload_saved_file", "discard_upload", "callback", "run_job", "notify"]
    else:
        assert [sync.path for sync in syncs] == [f"/api/2.0/vector-search/indexes/{index}/sync"]
        assert step_names(run) == [
            "upload_saved_file",
            "discard_upload",
            "callback",
            "run_job",
            "sync_vector_index",
            "notify",
        ]


def test_upload_and_process_with_a_path_outside_a_volume_fails_before_any_job(
    service: Service, databricks_double: DatabricksDouble, tmp_path: Path
) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) has no
    Files API. A typo in the volume path must not start a job on a file that never landed."""
    handle = service.runtime.uploads.save(io.BytesIO(b"id\n1\n"), "upload-bad-path")

    start(
        service,
        "upload-bad-path",
        "upload_and_process",
        upload=handle,
        volume_path="/tmp/x.csv",
        job=JOB,
    )
    run = service.wait_for("upload-bad-path")

    assert run["status"] == "failed"
    assert "'/tmp/x.csv' is not a file in a Unity Catalog volume" in run["error"]
    assert databricks_double.requests == []
    assert list((tmp_path / "uploads").iterdir()) == []  # a failed upload is discarded too


# -- POST /runs/upload_and_process ----------------------------------------------------------


def test_upload_route_saves_the_file_and_starts_the_pipeline_on_it(
    service: Service, databricks_double: DatabricksDouble, tmp_path: Path
) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) has no
    Files API.

    The bytes that reach the volume are the ones posted, the run gets a handle (no host
    path), and posting the same id again returns the run and keeps nothing it sent.
    """
    databricks_double.route("PUT", FILES, no_content())
    data = bytes(range(256)) * 8
    form = {
        "volume_path": VOLUME_FILE,
        "job": JOB,
        "id": "upload-form",
        "params": json.dumps({"day": "tue"}),
    }

    response = service.http.post(
        "/runs/upload_and_process", data=form, files={"file": ("orders.csv", data, "text/csv")}
    )

    assert response.status_code == 201, response.text
    started = response.json()
    assert started["pipeline"] == "upload_and_process"
    assert started["params"] == {
        "upload": started["params"]["upload"],
        "volume_path": VOLUME_FILE,
        "job": JOB,
        "params": {"day": "tue"},
        "index": None,
    }
    assert re.fullmatch(HANDLE_PATTERN, started["params"]["upload"])
    widgets = play_notebook(service, databricks_double, "upload-form", "ok")
    assert service.wait_for("upload-form")["result"] == "ok"
    assert databricks_double.only_request("PUT", FILES).body == data
    assert widgets["day"] == "tue"

    again = service.http.post(
        "/runs/upload_and_process", data=form, files={"file": ("orders.csv", b"other", "text/csv")}
    )

    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["status"]) == ("upload-form", "done")
    assert again.json()["params"]["upload"] == started["params"]["upload"]
    assert databricks_double.only_request("PUT", FILES).body == data
    assert list((tmp_path / "uploads").iterdir()) == []


@pytest.mark.parametrize(
    ("filename", "fields", "says"),
    [
        ("../escape.csv", {}, "not a plain file name"),
        ("nested/orders.csv", {}, "not a plain file name"),
        ("..", {}, "not a plain file name"),
        ("orders.csv", {"volume_path": "/tmp/orders.csv"}, "not a file in a Unity Catalog volume"),
        ("orders.csv", {"params": "{not json"}, "params: not JSON"),
        ("orders.csv", {"params": '["a"]'}, "expected a JSON object"),
        ("orders.csv", {"params": '{"day": 1}'}, "params.day: Input should be a valid string"),
        ("orders.csv", {"id": "a:b"}, "pattern"),
    ],
)
def test_upload_route_refuses_bad_input_and_keeps_nothing(
    service: Service, tmp_path: Path, filename: str, fields: dict[str, str], says: str
) -> None:
    """Runs against the recorded-shape HTTP double, like the other tests here, though no
    request reaches it: bad input is refused before anything is saved or started."""
    form = {"volume_path": VOLUME_FILE, "job": JOB, "id": "upload-refused"} | fields

    response = service.http.post(
        "/runs/upload_and_process", data=form, files={"file": (filename, b"id\n1\n", "text/csv")}
    )

    assert response.status_code == 422, response.text
    assert says in json.dumps(response.json())
    assert list((tmp_path / "uploads").rglob("*")) == []
    assert service.http.get("/runs/upload-refused").status_code == 404


def test_upload_route_refuses_a_body_over_the_limit(service: Service, tmp_path: Path) -> None:
    """Runs against the recorded-shape HTTP double, like the other tests here, though no
    request reaches it: the global body limit covers uploads too."""
    big = b"x" * (service.runtime.settings.max_value_bytes + 1)
    form = {"volume_path": VOLUME_FILE, "job": JOB, "id": "upload-big"}

    response = service.http.post("/runs/upload_and_process", data=form, files={"file": ("big.bin", big)})

    assert response.status_code == 413, response.text
    assert response.json()["detail"] == (
        f"request body over {service.runtime.settings.max_value_bytes} bytes (DARA_MAX_VALUE_BYTES); "
        "send less or raise the setting"
    )
    assert not (tmp_path / "uploads").exists()


# -- sql_then_job ----------------------------------------------------------------------------


def test_sql_then_job_hands_the_query_rows_to_the_job(service: Service, databricks_double: DatabricksDouble) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) cannot
    answer a chosen statement result, and the job's callback is played by the test.

    The rows arrive typed as the warehouse typed them (LONG as a number), as JSON text
    under the parameter the pipeline was given.
    """
    statement = "SELECT region, count(*) AS orders FROM main.sales.orders GROUP BY region"
    databricks_double.route(
        "POST",
        STATEMENTS,
        recorded_statement(
            "01ef-sql",
            "SUCCEEDED",
            columns=[("region", "STRING"), ("orders", "LONG")],
            rows=[["emea", "12"], ["apac", None]],
        ),
    )

    start(
        service,
        "sql-job",
        "sql_then_job",
        warehouse_id="wh-1",
        statement=statement,
        job=JOB,
        param="by_region",
    )
    widgets = play_notebook(service, databricks_double, "sql-job", {"mailed": 2})
    run = service.wait_for("sql-job")

    assert (run["status"], run["result"]) == ("done", {"mailed": 2}), run
    sent = databricks_double.only_request("POST", STATEMENTS).json
    assert (sent["statement"], sent["warehouse_id"]) == (statement, "wh-1")
    assert json.loads(widgets["by_region"]) == [["emea", 12], ["apac", None]]
    assert "rows" not in widgets
    assert step_names(run) == ["run_sql", "callback", "run_job", "notify"]


def test_sql_then_job_with_a_failing_statement_starts_no_job(
    service: Service, databricks_double: DatabricksDouble
) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) cannot be
    made to fail a statement with a chosen error."""
    databricks_double.route(
        "POST",
        STATEMENTS,
        recorded_statement("01ef-bad", "FAILED", error=("BAD_REQUEST", "[TABLE_OR_VIEW_NOT_FOUND] main.sales.nope")),
    )

    statement = "SELECT * FROM main.sales.nope"
    start(service, "sql-bad", "sql_then_job", warehouse_id="wh-1", statement=statement, job=JOB)
    run = service.wait_for("sql-bad")

    assert run["status"] == "failed"
    assert "TABLE_OR_VIEW_NOT_FOUND" in run["error"]
    assert databricks_double.requests_to("POST", RUN_NOW) == []


# -- lakeflow_refresh ------------------------------------------------------------------------


def test_lakeflow_refresh_waits_for_the_update_then_runs_the_job(
    service: Service, databricks_double: DatabricksDouble
) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) has no
    Lakeflow (Pipelines) API.

    The job starts only after the update was seen COMPLETED, having been polled through
    its non-terminal states between durable sleeps.
    """
    databricks_double.route("POST", UPDATES, recorded_start_update(UPDATE_ID))
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE_ID, UPDATE_ID, "COMPLETED"))
    databricks_double.queue(
        "GET",
        UPDATE,
        recorded_update(PIPELINE_ID, UPDATE_ID, "WAITING_FOR_RESOURCES"),
        recorded_update(PIPELINE_ID, UPDATE_ID, "RUNNING"),
        recorded_update(PIPELINE_ID, UPDATE_ID, "RUNNING"),
    )

    start(
        service,
        "lakeflow-ok",
        "lakeflow_refresh",
        pipeline_id=PIPELINE_ID,
        job=JOB,
        full_refresh=True,
    )
    widgets = play_notebook(service, databricks_double, "lakeflow-ok", {"published": True})
    run = service.wait_for("lakeflow-ok")

    assert (run["status"], run["result"]) == ("done", {"published": True}), run
    started = databricks_double.only_request("POST", UPDATES)
    assert started.path == f"/api/2.0/pipelines/{PIPELINE_ID}/updates"
    assert started.json == {"full_refresh": True}
    polls = databricks_double.requests_to("GET", UPDATE)
    assert len(polls) == 4
    last_poll = databricks_double.requests.index(polls[-1])
    assert last_poll < position(databricks_double, "POST", RUN_NOW)
    assert (widgets["pipeline_id"], widgets["update_id"]) == (PIPELINE_ID, UPDATE_ID)
    polled = [s["result"]["state"] for s in run["steps"] if s["name"] == "pipeline_update_state"]
    assert polled == ["WAITING_FOR_RESOURCES", "RUNNING", "RUNNING", "COMPLETED"]
    assert sum(step["kind"] == "sleep" for step in run["steps"]) == 4


def test_lakeflow_refresh_fails_with_the_updates_error_and_runs_no_job(
    service: Service, databricks_double: DatabricksDouble
) -> None:
    """Runs against the recorded-shape HTTP double: the local workspace (brickhouse) has no
    Lakeflow (Pipelines) API.

    A failed update means stale tables: the job must not run, and the run's error must say
    why the update failed, not only that it did.
    """
    databricks_double.route("POST", UPDATES, recorded_start_update(UPDATE_ID))
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE_ID, UPDATE_ID, "FAILED"))
    databricks_double.queue("GET", UPDATE, recorded_update(PIPELINE_ID, UPDATE_ID, "RUNNING"))
    cause = "[TABLE_OR_VIEW_NOT_FOUND] main.raw.orders cannot be found."
    databricks_double.route(
        "GET",
        EVENTS,
        {
            "events": [
                recorded_pipeline_event(
                    PIPELINE_ID,
                    UPDATE_ID,
                    level="ERROR",
                    message=f"Update {UPDATE_ID} is FAILED.",
                    error=cause,
                )
            ]
        },
    )

    start(service, "lakeflow-fail", "lakeflow_refresh", pipeline_id=PIPELINE_ID, job=JOB)
    run = service.wait_for("lakeflow-fail")

    assert run["status"] == "failed", run
    assert f"Lakeflow update {UPDATE_ID} ended FAILED" in run["error"]
    assert cause in run["error"]
    assert f"/pipelines/{PIPELINE_ID}/updates/{UPDATE_ID}" in run["error"]
    assert len(databricks_double.requests_to("GET", UPDATE)) == 2
    assert databricks_double.requests_to("POST", RUN_NOW) == []
    assert databricks_double.requests_to("GET", JOBS_LIST) == []
