"""The Databricks HTTP double serves only bodies databricks-sdk's own types read whole.

Each ``recorded_*`` builder is checked over its range against the response type of the
route it answers (scripts/databricks_shapes.py); the check itself is shown to catch each
way the double once drifted; and a drifted body actually served fails the test that
served it, through the ``databricks_double`` fixture.
"""

from __future__ import annotations

from typing import Any

import pytest
from databricks.sdk.service import jobs

from scripts.databricks_double import (
    DatabricksDouble,
    RecordedRequest,
    paged,
    recorded_chunk,
    recorded_pipeline_event,
    recorded_run,
    recorded_start_update,
    recorded_statement,
    recorded_submit_run,
    recorded_update,
    workspace_client,
)
from scripts.databricks_shapes import problems, unknown_fields

GET_RUN = "/api/2.2/jobs/runs/get"
EVENTS = "/api/2.0/pipelines/p-1/events"
HOST = "http://127.0.0.1:1"

#: (life_cycle_state, result_state) of every run state the API reports.
RUN_STATES = [
    ("QUEUED", None),
    ("PENDING", None),
    ("RUNNING", None),
    ("BLOCKED", None),
    ("WAITING_FOR_RETRY", None),
    ("TERMINATING", None),
    *[("TERMINATED", result.value) for result in jobs.RunResultState],
    ("SKIPPED", None),
    ("INTERNAL_ERROR", None),
]


def run(life_cycle_state: str = "RUNNING", result_state: str | None = None) -> dict[str, Any]:
    return recorded_run(
        host=HOST,
        job_id=7,
        run_id=70,
        run_name="r",
        notebook_path="/Workspace/n",
        life_cycle_state=life_cycle_state,
        result_state=result_state,
    )


@pytest.mark.parametrize(("life_cycle_state", "result_state"), RUN_STATES)
def test_a_recorded_run_in_every_state_is_a_jobs_run(life_cycle_state: str, result_state: str | None) -> None:
    body = run(life_cycle_state, result_state)

    assert problems("GET", GET_RUN, body) == []
    assert problems("GET", GET_RUN, body | {"run_type": "JOB_RUN", "job_run_id": 70}) == []
    listed = {"runs": [body], "has_more": False}
    assert problems("GET", "/api/2.2/jobs/runs/list", listed) == []


def test_an_ended_recorded_run_says_when_and_how_it_ended() -> None:
    ended = jobs.Run.from_dict(run("TERMINATED", "FAILED"))

    assert ended.status is not None and ended.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert ended.status.termination_details is not None
    assert ended.status.termination_details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR
    assert ended.start_time and ended.end_time and ended.end_time > ended.start_time
    assert ended.run_duration == ended.end_time - ended.start_time
    [task] = ended.tasks or []
    assert task.state is not None and task.state.result_state == jobs.RunResultState.FAILED


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/2.2/jobs/runs/submit", recorded_submit_run(5)),
        ("POST", "/api/2.0/sql/statements", recorded_statement("s-1", "PENDING")),
        ("GET", "/api/2.0/sql/statements/s-1", recorded_statement("s-1", "FAILED", error=("BAD_REQUEST", "no"))),
        (
            "GET",
            "/api/2.0/sql/statements/s-1",
            recorded_statement(
                "s-1", "SUCCEEDED", columns=[("id", "LONG"), ("p", "DECIMAL")], rows=[["1", "2.5"]], chunk_rows=[1, 4]
            ),
        ),
        ("GET", "/api/2.0/sql/statements/s-1/result/chunks/1", recorded_chunk(1, 1, [["2", None]], has_next=True)),
        ("POST", "/api/2.0/pipelines/p-1/updates", recorded_start_update("u-1")),
        *[
            ("GET", "/api/2.0/pipelines/p-1/updates/u-1", recorded_update("p-1", "u-1", s))
            for s in ("RUNNING", "FAILED", "CANCELED", "COMPLETED")
        ],
        ("GET", EVENTS, {"events": [recorded_pipeline_event("p-1", "u-1", level="ERROR", message="m", error="e")]}),
        ("GET", EVENTS, {"events": [recorded_pipeline_event("p-1", "u-1", level="INFO", message="m")]}),
    ],
    ids=lambda value: value if isinstance(value, str) and not value.startswith("/") else "",
)
def test_every_recorded_body_is_what_its_route_answers(method: str, path: str, body: dict[str, Any]) -> None:
    assert problems(method, path, body) == []


def test_every_page_of_a_paged_list_is_a_list_response() -> None:
    answer = paged("runs", [run("RUNNING"), run("TERMINATED", "SUCCESS"), run("PENDING")], page_size=2, has_more=True)

    def page(token: str | None) -> dict[str, Any]:
        query = {"page_token": [token]} if token else {}
        return answer(RecordedRequest("GET", "/api/2.2/jobs/runs/list", "", query, {}, b""))

    first = page(None)
    second = page(first["next_page_token"])

    assert (len(first["runs"]), first["has_more"], len(second["runs"]), second["has_more"]) == (2, True, 1, False)
    assert "next_page_token" not in second
    for body in (first, second):
        assert problems("GET", "/api/2.2/jobs/runs/list", body) == []


# -- the check catches each way the double drifted --------------------------------------


def test_the_check_names_fields_the_sdk_types_do_not_have() -> None:
    drifted = run() | {"format": "MULTI_TASK", "task": {"notebook_task": {"notebook_path": "/n"}}}
    event = recorded_pipeline_event("p-1", "u-1", level="ERROR", message="m")
    event["origin"]["pipeline_type"] = "WORKSPACE"

    assert unknown_fields(jobs.Run, drifted) == ["Run.format: not a field of Run", "Run.task: not a field of Run"]
    assert problems("GET", EVENTS, {"events": [event]}) == [
        f"GET {EVENTS}: ListPipelineEventsResponse.events[0].origin.pipeline_type: not a field of Origin"
    ]


def test_the_check_names_values_the_sdk_cannot_read() -> None:
    drifted = run()
    drifted["tasks"][0]["state"]["life_cycle_state"] = "SLEEPING"

    assert unknown_fields(jobs.Run, drifted) == [
        "Run.tasks[0].state.life_cycle_state: 'SLEEPING' is not a value databricks-sdk reads"
    ]


def test_the_check_holds_status_to_state_and_an_ended_run_to_its_end() -> None:
    stale_status = run("TERMINATED", "SUCCESS")
    stale_status["status"] = {"state": "PENDING"}
    no_end = run("TERMINATED", "SUCCESS") | {"end_time": 0, "run_duration": 0}

    assert problems("GET", GET_RUN, stale_status) == [
        f"GET {GET_RUN}: run: status.state PENDING but state.life_cycle_state TERMINATED"
    ]
    assert [p.split(": ", 2)[2] for p in problems("GET", GET_RUN, no_end)] == [
        "ended (TERMINATED) but end_time is 0",
        "ended (TERMINATED) but run_duration is 0",
    ]


def test_a_drifted_body_served_is_recorded_against_the_double() -> None:
    """What the fixture fails a test on: the step reads the run happily (the SDK drops
    the field), but the double notes that no workspace would have sent it."""
    with DatabricksDouble() as double:
        double.route("GET", GET_RUN, run() | {"format": "MULTI_TASK"})
        fetched = workspace_client(double).jobs.get_run(70)

    assert fetched.run_id == 70
    assert double.shape_errors == [f"GET {GET_RUN}: Run.format: not a field of Run"]
