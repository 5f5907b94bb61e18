"""Steps whose Databricks APIs brickhouse does not emulate, against the HTTP double.

brickhouse has no one-time runs (``runs/submit``), Files API, Lakeflow pipelines or
Vector Search, and cannot be scripted to answer SQL statements with a chosen
sequence of states and errors; these tests therefore run each step with a real
``WorkspaceClient`` against :mod:`scripts.databricks_double`, assert the exact request
the step sent, and check what it makes of the recorded-shape answer.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as dbx

from app.callback_tokens import CallbackSigner
from app.durable import StepInfo
from scripts.databricks_double import (
    DatabricksDouble,
    Delay,
    Drop,
    RecordedRequest,
    api_error,
    no_content,
    paged,
    recorded_chunk,
    recorded_pipeline_event,
    recorded_run,
    recorded_start_update,
    recorded_statement,
    recorded_submit_run,
    recorded_update,
    throttled,
    unavailable,
    workspace_client,
)
from steps.files import UploadedFile, upload_to_volume
from steps.jobs import JobRun, find_job_id, submit_notebook
from steps.lakeflow import PipelineUpdate, UpdateState, pipeline_update_state, start_pipeline_update
from steps.retryable import is_transient
from steps.sql import QueryResult, StatementFailed, StatementTimeout, run_sql
from steps.vector_search import IndexSync, sync_vector_index

SUBMIT = "/api/2.2/jobs/runs/submit"
GET_RUN = "/api/2.2/jobs/runs/get"
FILES = "/api/2.0/fs/files{path:path}"
STATEMENTS = "/api/2.0/sql/statements"
STATEMENT = "/api/2.0/sql/statements/{statement_id}"
CHUNK = "/api/2.0/sql/statements/{statement_id}/result/chunks/{chunk_index}"
CANCEL = "/api/2.0/sql/statements/{statement_id}/cancel"
UPDATES = "/api/2.0/pipelines/{pipeline_id}/updates"
UPDATE = "/api/2.0/pipelines/{pipeline_id}/updates/{update_id}"
EVENTS = "/api/2.0/pipelines/{pipeline_id}/events"
JOBS_LIST = "/api/2.2/jobs/list"
SYNC = "/api/2.0/vector-search/indexes/{index_name}/sync"

SIGNER = CallbackSigner("test-callback-secret-0123456789", "http://dara.test")
INFO = StepInfo(id="etl:3", run_id="etl", deadline_ms=1_900_000_000_000, incarnation="0f1e2d")
HIDDEN_JOB_ID = 918273645


@pytest.fixture
def w(databricks_double: DatabricksDouble) -> WorkspaceClient:
    return workspace_client(databricks_double)


class IdempotentSubmit:
    """``runs/submit`` and ``runs/get`` as the service behaves: one run per token."""

    def __init__(self, double: DatabricksDouble) -> None:
        self.double = double
        self.runs: dict[str, int] = {}
        self.lock = threading.Lock()
        double.route("POST", SUBMIT, self.submit)
        double.route("GET", GET_RUN, self.get_run)

    def submit(self, request: RecordedRequest) -> dict[str, Any]:
        token = request.json.get("idempotency_token") or f"untokened-{len(self.runs)}"
        with self.lock:
            run_id = self.runs.setdefault(token, 5550 + len(self.runs))
        return recorded_submit_run(run_id)

    def get_run(self, request: RecordedRequest) -> dict[str, Any]:
        run_id = int(request.query["run_id"][0])
        return recorded_run(
            host=self.double.url,
            job_id=HIDDEN_JOB_ID,
            run_id=run_id,
            run_name="dara etl:3",
            notebook_path="/Workspace/Shared/dara/etl",
        )


# -- jobs: submit_notebook -------------------------------------------------------------


def test_submit_notebook_sends_a_notebook_task_with_the_step_idempotency_token(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks ``runs/submit``."""
    IdempotentSubmit(databricks_double)

    run = submit_notebook(
        w,
        SIGNER,
        INFO,
        "/Workspace/Shared/dara/etl",
        {"date": "2024-11-24"},
        existing_cluster_id="0123-456789-abcdef",
        timeout_seconds=3600,
        callback_to="etl:2",
    )

    body = databricks_double.only_request("POST", SUBMIT).json
    assert body == {
        "run_name": "dara etl:3",
        "idempotency_token": INFO.idempotency_token,
        "timeout_seconds": 3600,
        "tasks": [
            {
                "task_key": "notebook",
                "existing_cluster_id": "0123-456789-abcdef",
                "notebook_task": {
                    "notebook_path": "/Workspace/Shared/dara/etl",
                    "base_parameters": {
                        "date": "2024-11-24",
                        "promise_id": "etl:2",
                        "callback_url": "http://dara.test",
                        "callback_signature": SIGNER.token("etl:2", INFO.incarnation),
                    },
                },
            }
        ],
    }
    assert databricks_double.only_request("GET", GET_RUN).query == {"run_id": ["5550"]}
    assert run == JobRun(
        job_id=HIDDEN_JOB_ID,
        run_id=5550,
        url=f"{databricks_double.url}/jobs/{HIDDEN_JOB_ID}/runs/5550",
    )


def test_submit_notebook_reexecuted_gets_back_the_first_run(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks ``runs/submit``.

    The double dedupes by token as Databricks does; the step must send the same token
    on re-execution and a different one for a different step.
    """
    IdempotentSubmit(databricks_double)

    first = submit_notebook(w, SIGNER, INFO, "/Workspace/Shared/dara/etl", {})
    again = submit_notebook(w, SIGNER, INFO, "/Workspace/Shared/dara/etl", {})
    other = submit_notebook(w, SIGNER, StepInfo("etl:4", "etl", INFO.deadline_ms), "/Workspace/Shared/dara/etl", {})

    assert first == again
    assert other.run_id != first.run_id
    tokens = [r.json["idempotency_token"] for r in databricks_double.requests_to("POST", SUBMIT)]
    assert tokens[0] == tokens[1] != tokens[2]


def test_submit_notebook_passes_a_new_cluster_spec_in_its_json_shape(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks ``runs/submit``."""
    IdempotentSubmit(databricks_double)
    cluster = {
        "spark_version": "15.4.x-scala2.12",
        "node_type_id": "i3.xlarge",
        "num_workers": 2,
        "spark_conf": {"spark.speculation": "true"},
    }

    submit_notebook(w, SIGNER, INFO, "/Workspace/Shared/dara/etl", {}, new_cluster=cluster)

    task = databricks_double.only_request("POST", SUBMIT).json["tasks"][0]
    assert task["new_cluster"] == cluster
    assert "existing_cluster_id" not in task


def test_submit_notebook_refuses_two_kinds_of_compute(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double (brickhouse lacks ``runs/submit``),
    to show that nothing is submitted."""
    with pytest.raises(ValueError, match="existing_cluster_id or new_cluster, not both"):
        submit_notebook(w, SIGNER, INFO, "/x", {}, existing_cluster_id="c", new_cluster={"num_workers": 1})
    assert databricks_double.requests == []


def test_throttled_submit_is_retried_by_the_sdk_with_the_same_token(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks ``runs/submit``.

    A 429 (with ``Retry-After: 0``) then success: databricks-sdk retries within its
    retry budget, so the step never sees the 429 -- and the retry is safe because it
    carries the same idempotency token.
    """
    IdempotentSubmit(databricks_double)
    databricks_double.queue("POST", SUBMIT, throttled(retry_after=0))

    run = submit_notebook(w, SIGNER, INFO, "/Workspace/Shared/dara/etl", {})

    submits = databricks_double.requests_to("POST", SUBMIT)
    assert len(submits) == 2
    assert submits[0].json == submits[1].json
    assert submits[1].json["idempotency_token"] == INFO.idempotency_token
    assert run.run_id == 5550
    assert databricks_double.queued("POST", SUBMIT) == 0


def test_throttling_beyond_the_sdk_retry_budget_surfaces_as_a_transient_error(
    databricks_double: DatabricksDouble,
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks ``runs/submit``.

    When 429s outlast databricks-sdk's ``retry_timeout_seconds``, it raises
    ``TimeoutError`` from the last ``TooManyRequests``; the step runner classifies
    that as transient and retries the whole step later.
    """
    IdempotentSubmit(databricks_double)
    databricks_double.queue("POST", SUBMIT, *[throttled(retry_after=0)] * 50)
    impatient = workspace_client(databricks_double, retry_timeout_seconds=1)

    with pytest.raises(TimeoutError) as raised:
        submit_notebook(impatient, SIGNER, INFO, "/Workspace/Shared/dara/etl", {})

    assert isinstance(raised.value.__cause__, dbx.TooManyRequests)
    assert is_transient(raised.value)
    assert is_transient(raised.value.__cause__)
    assert databricks_double.requests_to("GET", GET_RUN) == []


def test_submit_timed_out_by_the_client_is_retried_and_still_yields_one_run(
    databricks_double: DatabricksDouble,
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks ``runs/submit``.

    The first submit is answered after the client gave up (a read timeout); the
    service did create the run. The SDK's retry sends the same token, so both
    requests name one run.
    """
    IdempotentSubmit(databricks_double)
    databricks_double.queue("POST", SUBMIT, Delay(1.0))
    w = workspace_client(databricks_double, http_timeout_seconds=0.3)

    run = submit_notebook(w, SIGNER, INFO, "/Workspace/Shared/dara/etl", {})

    submits = databricks_double.requests_to("POST", SUBMIT)
    assert len(submits) == 2
    assert run.run_id == 5550


# -- files: upload_to_volume -----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/input.csv",
        "dbfs:/Volumes/main/default/landing/input.csv",
        "/Volumes/main/default/input.csv",
        "/Volumes/main/default/landing/",
        "/Volumes/main/default/landing/../../other/input.csv",
        "Volumes/main/default/landing/input.csv",
    ],
)
def test_upload_refuses_a_path_outside_a_volume_before_sending_anything(
    databricks_double: DatabricksDouble, w: WorkspaceClient, path: str
) -> None:
    """Runs against the recorded-shape HTTP double (brickhouse lacks the Files API),
    to show that no byte is sent."""
    with pytest.raises(ValueError) as raised:
        upload_to_volume(w, path, content=b"a,b\n")

    assert repr(path) in str(raised.value)
    assert "/Volumes/<catalog>/<schema>/<volume>/<path>" in str(raised.value)
    assert databricks_double.requests == []


def test_upload_puts_the_bytes_to_the_files_api(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Files API."""
    databricks_double.route("PUT", FILES, no_content())
    data = bytes(range(256)) * 4

    uploaded = upload_to_volume(w, "/Volumes/main/default/landing/in put.bin", content=data)

    request = databricks_double.only_request("PUT", FILES)
    assert request.path == "/api/2.0/fs/files/Volumes/main/default/landing/in put.bin"
    assert request.raw_path == "/api/2.0/fs/files/Volumes/main/default/landing/in%20put.bin"
    assert request.query == {"overwrite": ["true"]}
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.headers["authorization"] == "Bearer test"
    assert request.body == data
    assert uploaded == UploadedFile(path="/Volumes/main/default/landing/in put.bin", size=1024)


def test_upload_sends_a_local_file_without_overwriting(
    databricks_double: DatabricksDouble, w: WorkspaceClient, tmp_path: Any
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Files API."""
    databricks_double.route("PUT", FILES, no_content())
    source = tmp_path / "report.csv"
    source.write_text("id,name\n1,ada\n")

    uploaded = upload_to_volume(w, "/Volumes/main/default/landing/report.csv", local_path=str(source), overwrite=False)

    request = databricks_double.only_request("PUT", FILES)
    assert request.query == {"overwrite": ["false"]}
    assert request.body == b"id,name\n1,ada\n"
    assert uploaded.size == 14


def test_upload_sends_text_as_utf8_and_counts_bytes(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Files API."""
    databricks_double.route("PUT", FILES, no_content())

    uploaded = upload_to_volume(w, "/Volumes/main/default/landing/note.txt", content="café")

    assert databricks_double.only_request("PUT", FILES).body == "café".encode()
    assert uploaded.size == 5


def test_upload_surfaces_a_missing_volume_as_not_found(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Files API."""
    databricks_double.route("PUT", FILES, api_error(404, "NOT_FOUND", "The volume main.default.nope does not exist."))

    with pytest.raises(dbx.NotFound, match=r"main\.default\.nope does not exist"):
        upload_to_volume(w, "/Volumes/main/default/nope/x.csv", content=b"x")


# -- sql: run_sql -------------------------------------------------------------------------

COLUMNS = [
    ("id", "LONG"),
    ("name", "STRING"),
    ("score", "DOUBLE"),
    ("ok", "BOOLEAN"),
    ("price", "DECIMAL"),
]


def test_run_sql_sends_the_statement_and_returns_typed_rows(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double. brickhouse has the statements API
    but cannot be scripted to return a chosen result shape, state sequence or error."""
    databricks_double.route(
        "POST",
        STATEMENTS,
        recorded_statement(
            "01ef-aa",
            "SUCCEEDED",
            columns=COLUMNS,
            rows=[["1", "ada", "0.5", "true", "10.10"], ["2", None, "1.5", "false", None]],
        ),
    )

    result = run_sql(
        w,
        "wh-123",
        "SELECT * FROM t WHERE day = :day AND n > :n AND flag = :flag",
        {"day": "2024-11-24", "n": 3, "flag": True, "ratio": 0.25, "gone": None},
        catalog="main",
        schema="default",
    )

    assert databricks_double.only_request("POST", STATEMENTS).json == {
        "statement": "SELECT * FROM t WHERE day = :day AND n > :n AND flag = :flag",
        "warehouse_id": "wh-123",
        "catalog": "main",
        "schema": "default",
        "parameters": [
            {"name": "day", "value": "2024-11-24"},
            {"name": "n", "type": "BIGINT", "value": "3"},
            {"name": "flag", "type": "BOOLEAN", "value": "true"},
            {"name": "ratio", "type": "DOUBLE", "value": "0.25"},
            {"name": "gone"},
        ],
        "disposition": "INLINE",
        "format": "JSON_ARRAY",
        "wait_timeout": "30s",
        "on_wait_timeout": "CONTINUE",
    }
    assert result == QueryResult(
        statement_id="01ef-aa",
        columns=["id", "name", "score", "ok", "price"],
        column_types=["LONG", "STRING", "DOUBLE", "BOOLEAN", "DECIMAL"],
        rows=[[1, "ada", 0.5, True, "10.10"], [2, None, 1.5, False, None]],
        row_count=2,
        truncated=False,
    )
    assert databricks_double.requests_to("GET", STATEMENT) == []


def test_run_sql_polls_until_done_and_fetches_every_chunk(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double. brickhouse has the statements API
    but cannot be scripted to stay PENDING/RUNNING or to split a result into chunks."""
    databricks_double.route("POST", STATEMENTS, recorded_statement("01ef-bb", "PENDING"))
    databricks_double.route(
        "GET",
        STATEMENT,
        recorded_statement("01ef-bb", "SUCCEEDED", columns=[("n", "INT")], rows=[["1"], ["2"]], chunk_rows=[2, 1]),
    )
    databricks_double.queue("GET", STATEMENT, recorded_statement("01ef-bb", "RUNNING"))
    databricks_double.route("GET", CHUNK, recorded_chunk(1, 2, [["3"]], has_next=False))

    result = run_sql(w, "wh-123", "SELECT n FROM t", poll_interval=0.01)

    polls = databricks_double.requests_to("GET", STATEMENT)
    assert [p.params["statement_id"] for p in polls] == ["01ef-bb", "01ef-bb"]
    assert databricks_double.only_request("GET", CHUNK).params == {
        "statement_id": "01ef-bb",
        "chunk_index": "1",
    }
    assert result.rows == [[1], [2], [3]]
    assert result.row_count == 3


def test_run_sql_raises_the_statement_error_when_it_failed(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double. brickhouse has the statements API
    but not Databricks' error codes and messages for a FAILED statement."""
    message = (
        "[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`default`.`nope` cannot be "
        "found. SQLSTATE: 42P01; line 1 pos 14"
    )
    databricks_double.route(
        "POST",
        STATEMENTS,
        recorded_statement("01ef-cc", "FAILED", error=("BAD_REQUEST", message)),
    )

    with pytest.raises(StatementFailed) as raised:
        run_sql(w, "wh-123", "SELECT * FROM main.default.nope")

    assert str(raised.value) == f"statement 01ef-cc FAILED: BAD_REQUEST: {message}"
    assert not is_transient(raised.value)


def test_run_sql_failed_because_the_warehouse_was_unavailable_is_transient(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double. brickhouse has the statements API
    but its warehouse is never unavailable."""
    databricks_double.route("POST", STATEMENTS, recorded_statement("01ef-dd", "PENDING"))
    databricks_double.route(
        "GET",
        STATEMENT,
        recorded_statement("01ef-dd", "FAILED", error=("TEMPORARILY_UNAVAILABLE", "Warehouse is restarting")),
    )

    with pytest.raises(dbx.TemporarilyUnavailable, match="Warehouse is restarting") as raised:
        run_sql(w, "wh-123", "SELECT 1", poll_interval=0.01)

    assert is_transient(raised.value)


def test_run_sql_cancels_a_statement_that_outlives_its_timeout(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double. brickhouse has the statements API
    but cannot keep a statement RUNNING on demand."""
    databricks_double.route("POST", STATEMENTS, recorded_statement("01ef-ee", "RUNNING"))
    databricks_double.route("GET", STATEMENT, recorded_statement("01ef-ee", "RUNNING"))
    databricks_double.route("POST", CANCEL, {})

    with pytest.raises(StatementTimeout, match=r"01ef-ee did not finish within 0\.2s"):
        run_sql(w, "wh-123", "SELECT slow()", timeout=0.2, poll_interval=0.05)

    assert databricks_double.only_request("POST", CANCEL).params == {"statement_id": "01ef-ee"}
    assert len(databricks_double.requests_to("GET", STATEMENT)) >= 1


def test_run_sql_refuses_a_wait_timeout_the_api_would_reject(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double (brickhouse is not needed to show
    that nothing is sent)."""
    with pytest.raises(ValueError, match="0 or between 5 and 50"):
        run_sql(w, "wh-123", "SELECT 1", wait_timeout=60)
    assert databricks_double.requests == []


# -- lakeflow: start_pipeline_update / pipeline_update_state --------------------------------

PIPELINE = "a1b2c3d4-0000-1111-2222-333344445555"
UPDATE_ID = "9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"


def test_start_pipeline_update_posts_full_refresh_and_returns_the_update(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Pipelines API."""
    databricks_double.route("POST", UPDATES, recorded_start_update(UPDATE_ID))

    update = start_pipeline_update(w, PIPELINE, full_refresh=True)

    request = databricks_double.only_request("POST", UPDATES)
    assert request.params == {"pipeline_id": PIPELINE}
    assert request.json == {"full_refresh": True}
    assert update == PipelineUpdate(
        pipeline_id=PIPELINE,
        update_id=UPDATE_ID,
        url=f"{databricks_double.url}/pipelines/{PIPELINE}/updates/{UPDATE_ID}",
    )


def test_start_pipeline_update_while_one_is_active_fails_with_the_conflict(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Pipelines API."""
    databricks_double.route(
        "POST",
        UPDATES,
        api_error(409, "RESOURCE_CONFLICT", f"Pipeline {PIPELINE} has an active update."),
    )

    with pytest.raises(dbx.ResourceConflict, match="has an active update"):
        start_pipeline_update(w, PIPELINE)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [("QUEUED", False), ("WAITING_FOR_RESOURCES", False), ("RUNNING", False), ("COMPLETED", True)],
)
def test_pipeline_update_state_of_an_update_that_did_not_fail(
    databricks_double: DatabricksDouble, w: WorkspaceClient, state: str, terminal: bool
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Pipelines API."""
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE, UPDATE_ID, state))

    result = pipeline_update_state(w, PIPELINE, UPDATE_ID)

    assert databricks_double.only_request("GET", UPDATE).params == {
        "pipeline_id": PIPELINE,
        "update_id": UPDATE_ID,
    }
    assert result == UpdateState(state=state, terminal=terminal, failed=False, message=None)
    assert databricks_double.requests_to("GET", EVENTS) == []


def test_pipeline_update_state_of_a_failed_update_carries_its_error(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Pipelines API.

    The error is looked up in the pipeline's error events; another update's error
    must not be reported as this one's.
    """
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE, UPDATE_ID, "FAILED"))
    databricks_double.route(
        "GET",
        EVENTS,
        {
            "events": [
                recorded_pipeline_event(
                    PIPELINE,
                    "other-update",
                    level="ERROR",
                    message="Update other is FAILED.",
                    error="older, unrelated failure",
                ),
                recorded_pipeline_event(
                    PIPELINE,
                    UPDATE_ID,
                    level="ERROR",
                    message="Update 9f8e7d is FAILED.",
                    error="[TABLE_OR_VIEW_NOT_FOUND] main.raw.orders cannot be found.",
                ),
                recorded_pipeline_event(
                    PIPELINE,
                    UPDATE_ID,
                    level="ERROR",
                    message="Flow 'orders' has FAILED.",
                    error="[TABLE_OR_VIEW_NOT_FOUND] main.raw.orders cannot be found.",
                ),
            ]
        },
    )

    result = pipeline_update_state(w, PIPELINE, UPDATE_ID)

    events = databricks_double.only_request("GET", EVENTS)
    assert events.query["filter"] == ["level='ERROR'"]
    assert result == UpdateState(
        state="FAILED",
        terminal=True,
        failed=True,
        message="Update 9f8e7d is FAILED.\n[TABLE_OR_VIEW_NOT_FOUND] main.raw.orders cannot be found.",
    )


def test_pipeline_update_state_of_a_canceled_update(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Pipelines API."""
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE, UPDATE_ID, "CANCELED"))

    result = pipeline_update_state(w, PIPELINE, UPDATE_ID)

    assert (result.state, result.terminal, result.failed) == ("CANCELED", True, False)
    assert result.message == f"update {UPDATE_ID} was canceled"


def test_pipeline_update_state_survives_a_dropped_connection_and_a_503(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks the Pipelines API.

    A reset connection and a 503 are retried by databricks-sdk itself (a read is
    always safe to repeat), so the step returns the state the third answer carries.
    """
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE, UPDATE_ID, "RUNNING"))
    databricks_double.queue("GET", UPDATE, Drop(), unavailable(retry_after=0))

    result = pipeline_update_state(w, PIPELINE, UPDATE_ID)

    assert result.state == "RUNNING"
    assert len(databricks_double.requests_to("GET", UPDATE)) == 3


# -- vector search: sync_vector_index -------------------------------------------------------


def test_sync_vector_index_posts_to_the_index_sync_endpoint(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks Vector Search."""
    databricks_double.route("POST", SYNC, {})

    synced = sync_vector_index(w, "main.default.docs_index")

    request = databricks_double.only_request("POST", SYNC)
    assert request.path == "/api/2.0/vector-search/indexes/main.default.docs_index/sync"
    assert request.json == {}
    assert synced == IndexSync(
        index_name="main.default.docs_index",
        url=f"{databricks_double.url}/explore/data/main/default/docs_index",
        started=True,
    )


def test_sync_vector_index_while_a_sync_runs_reports_none_started(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks Vector Search."""
    databricks_double.route(
        "POST",
        SYNC,
        api_error(
            400,
            "BAD_REQUEST",
            "Index is not ready to sync yet. Pipeline is in state RUNNING and needs to be in "
            "one of the following states to sync: COMPLETED, FAILED, CANCELED.",
        ),
    )

    synced = sync_vector_index(w, "main.default.docs_index")

    assert synced.started is False


def test_sync_vector_index_raises_other_bad_requests(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double: brickhouse lacks Vector Search."""
    databricks_double.route(
        "POST",
        SYNC,
        api_error(400, "INVALID_PARAMETER_VALUE", "Index main.default.direct is not a Delta Sync index."),
    )

    with pytest.raises(dbx.BadRequest, match="not a Delta Sync index"):
        sync_vector_index(w, "main.default.direct")


@pytest.mark.parametrize("name", ["docs_index", "default.docs_index", "main..docs", "a.b.c.d"])
def test_sync_vector_index_refuses_a_name_that_is_not_three_level(
    databricks_double: DatabricksDouble, w: WorkspaceClient, name: str
) -> None:
    """Runs against the recorded-shape HTTP double (brickhouse lacks Vector Search),
    to show that nothing is sent."""
    with pytest.raises(ValueError, match=r"<catalog>\.<schema>\.<index>"):
        sync_vector_index(w, name)
    assert databricks_double.requests == []


# -- the double itself ---------------------------------------------------------------------


def test_the_double_answers_unrouted_requests_like_an_unknown_endpoint(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """The double's own contract: an API a test forgot to route fails loudly, in the
    shape Databricks uses for unknown endpoints, and is still recorded."""
    unknown = re.escape("No API found for 'GET /api/2.1/clusters/list'")
    with pytest.raises(dbx.NotFound, match=unknown):
        list(w.clusters.list())
    assert [r.path for r in databricks_double.requests] == ["/api/2.1/clusters/list"]


# -- lists a step reads, a page at a time --------------------------------------------------


def listed_job(job_id: int, name: str) -> dict[str, Any]:
    """One item of ``GET /api/2.2/jobs/list``' ``jobs``."""
    return {
        "job_id": job_id,
        "creator_user_name": "dara@example.com",
        "created_time": 1_700_000_000_000,
        "settings": {"name": name, "max_concurrent_runs": 1},
    }


def test_find_job_id_reads_every_page_of_jobs(databricks_double: DatabricksDouble, w: WorkspaceClient) -> None:
    """Runs against the recorded-shape HTTP double, which pages as the Jobs API does: a
    duplicate name on the second page must still be refused, not guessed past."""
    jobs = [listed_job(job_id, "nightly") for job_id in (11, 12, 13)]
    databricks_double.route("GET", JOBS_LIST, paged("jobs", jobs, page_size=2, has_more=True))

    with pytest.raises(LookupError, match=re.escape("3 jobs are named 'nightly' (ids [11, 12, 13])")):
        find_job_id(w, "nightly")

    pages = databricks_double.requests_to("GET", JOBS_LIST)
    assert [r.query.get("page_token") for r in pages] == [None, ["page-2"]]
    assert all(r.query["name"] == ["nightly"] for r in pages)


def test_a_failed_updates_error_is_found_on_a_later_page_of_events(
    databricks_double: DatabricksDouble, w: WorkspaceClient
) -> None:
    """Runs against the recorded-shape HTTP double: newer events of other updates fill
    the first page, and this update's error is on the second."""
    others = [
        recorded_pipeline_event(PIPELINE, f"other-{n}", level="ERROR", message=f"Update other-{n} is FAILED.")
        for n in range(2)
    ]
    cause = "[TABLE_OR_VIEW_NOT_FOUND] main.raw.orders cannot be found."
    mine = recorded_pipeline_event(PIPELINE, UPDATE_ID, level="ERROR", message="Update 9f8e7d is FAILED.", error=cause)
    databricks_double.route("GET", UPDATE, recorded_update(PIPELINE, UPDATE_ID, "FAILED"))
    databricks_double.route("GET", EVENTS, paged("events", [*others, mine], page_size=2))

    result = pipeline_update_state(w, PIPELINE, UPDATE_ID)

    assert result.message == f"Update 9f8e7d is FAILED.\n{cause}"
    assert [r.query.get("page_token") for r in databricks_double.requests_to("GET", EVENTS)] == [None, ["page-2"]]
