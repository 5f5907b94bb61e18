"""What ``GET /runs/{id}`` makes of a run's promises, in the details mutation testing found
unchecked (app.services.run_status; docs/TESTING.md): which step results are the run's
own, the Databricks run a step started, and the refusal of an unknown pipeline.
"""

from __future__ import annotations

import threading
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.durable.resonate_format import (
    EXTERNAL,
    ORIGIN,
    SCOPE,
    TIMER,
    StoredCall,
    error_message,
    made_by,
    stored_call,
)
from app.services.errors import BadParams, PipelineNotFound
from app.services.run_status import DatabricksRun, StepView, _databricks_run, _only_waits_pending, _show_once, is_run
from tests.harness import Service, sign
from tests.pipelines_for_tests import STEP_GATE


def test_a_step_result_is_folded_into_the_runs_only_when_it_is_that_result(service: Service) -> None:
    """The run returns {step, value}: the step's own result differs, so it stays on the step."""
    started = service.http.post("/runs", json={"pipeline": "records_a_step_then_waits", "id": "status-fold"})
    assert started.status_code == 201, started.text
    service.wait_until("status-fold", "waiting")
    resolved = service.http.post(
        "/resolve", json={"id": "status-fold:2", "value": "v", "token": sign(service.http, "status-fold:2")}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": "status-fold:2", "state": "resolved", "already_settled": False}

    run = service.wait_for("status-fold")

    assert run["result"] == {"step": "/Volumes/main/default/landing/in.csv", "value": "v"}
    step, wait = run["steps"]
    assert (step["result"], step["result_is_run_result"]) == ("/Volumes/main/default/landing/in.csv", False)
    assert (wait["result"], wait["result_is_run_result"]) == ("v", False)


def test_the_demo_runs_databricks_run_carries_its_job(service: Service) -> None:
    jobs = service.runtime.workspace.jobs.list(name=service.runtime.settings.demo_job_name)
    [job] = list(jobs)
    started = service.http.post(
        "/runs", json={"pipeline": "notebook_job", "id": "status-job", "params": {"job": job.settings.name}}
    )
    assert started.status_code == 201, started.text

    service.wait_for("status-job")
    run = service.http.get("/runs/status-job").json()  # read once, without waiting
    # Its watcher records how the Databricks run ended, on its next look.
    ended = service.wait_until("status-job", "done", also=lambda r: r["databricks_runs"][0]["state"] is not None)
    assert ended["databricks_runs"][0]["state"] == "SUCCESS"
    # Its callback, run_job and notify: the watcher is DARA's, not the pipeline's work.
    assert ended["progress"] == {"done": 3, "seen": 3}

    [databricks] = run["databricks_runs"]
    assert databricks["job_id"] == job.job_id
    host = service.runtime.workspace_host.rstrip("/")
    assert databricks["url"] == f"{host}/jobs/{job.job_id}/runs/{databricks['run_id']}"


def test_an_unknown_pipeline_is_refused_naming_every_known_one(service: Service) -> None:
    known = sorted(pipeline["name"] for pipeline in service.http.get("/pipelines").json())

    refused = service.http.post("/runs", json={"pipeline": "nope"})

    assert refused.status_code == 404, refused.text
    assert refused.json()["detail"] == f"no pipeline named 'nope'; known: {', '.join(known)}"


def test_a_wait_and_a_sleep_are_shown_by_kind_with_their_times(service: Service) -> None:
    started = service.http.post("/runs", json={"pipeline": "waits_then_sleeps", "id": "status-kinds"})
    assert started.status_code == 201, started.text
    waiting = service.wait_until("status-kinds", "waiting")
    [wait] = waiting["steps"]
    assert (wait["name"], wait["kind"], wait["state"], wait["finished_at"]) == ("callback", "callback", "pending", None)
    resolved = service.http.post(
        "/resolve", json={"id": "status-kinds:1", "value": 1, "token": sign(service.http, "status-kinds:1")}
    )
    assert resolved.status_code == 200, resolved.text

    run = service.wait_for("status-kinds")

    wait, sleep = run["steps"]
    assert [(step["name"], step["kind"], step["state"]) for step in run["steps"]] == [
        ("callback", "callback", "resolved"),
        (None, "sleep", "resolved"),
    ]
    for step in (wait, sleep):
        assert step["started_at"] <= step["finished_at"] <= run["finished_at"], step


def test_a_filtered_listing_fills_its_page_exactly(service: Service) -> None:
    """Runs of two pipelines, interleaved: each page of one holds ``limit`` of it, no more."""
    for i in range(3):
        for pipeline in ("sleeps", "waits_for_callback"):
            body = {"pipeline": pipeline, "id": f"status-list-{pipeline}-{i}", "params": {}}
            assert service.http.post("/runs", json=body).status_code == 201

    first = service.http.get("/runs", params={"pipeline": "waits_for_callback", "limit": 2}).json()
    second = service.http.get(
        "/runs", params={"pipeline": "waits_for_callback", "limit": 2, "cursor": first["next_cursor"]}
    ).json()

    assert [run["id"] for run in first["runs"]] == [f"status-list-waits_for_callback-{i}" for i in (2, 1)]
    assert second["runs"][0]["id"] == "status-list-waits_for_callback-0" and len(second["runs"]) <= 2


def long_poll_held(
    service: Service, monkeypatch: pytest.MonkeyPatch, run_id: str
) -> tuple[threading.Thread, list[httpx.Response]]:
    """One ``GET /runs/{run_id}?wait=60`` in a thread, returned once DARA holds it (it has
    the run's handle, to wait for its end). The client gives up long before the poll's
    own 60 s, so a poll that sat out its wait leaves no answer."""
    resonate = service.runtime.resonate
    holding = threading.Event()

    async def get(run_id: str) -> Any:
        handle = await type(resonate).get(resonate, run_id)
        holding.set()
        return handle

    monkeypatch.setattr(resonate, "get", get)
    answers: list[httpx.Response] = []

    def poll() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as http:
            answers.append(http.get(f"/runs/{run_id}", params={"wait": 60}))

    polling = threading.Thread(target=poll)
    polling.start()
    assert holding.wait(timeout=30), answers
    return polling, answers


def test_one_long_poll_answers_with_the_run_once_it_ends(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """One request, sent while the run waits: its answer is the ended run. The client
    gives up long before the poll's own 60 s, so a poll that sat out its wait fails."""
    started = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "status-poll"})
    assert started.status_code == 201, started.text
    service.wait_until("status-poll", "waiting")
    polling, answers = long_poll_held(service, monkeypatch, "status-poll")
    token = sign(service.http, "status-poll:1")
    assert service.http.post("/resolve", json={"id": "status-poll:1", "value": 7, "token": token}).status_code == 200
    polling.join()

    [answer] = answers
    assert (answer.status_code, answer.json()["status"], answer.json()["result"]) == (200, "done", 7)


def test_a_run_with_a_step_in_flight_is_running_though_a_wait_is_open(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Then one long poll, sent while it runs, answers once it has ended."""
    STEP_GATE.clear()
    started = service.http.post("/runs", json={"pipeline": "waits_while_a_step_runs", "id": "status-held"})
    assert started.status_code == 201, started.text
    running = service.wait_until("status-held", "running", also=lambda r: len(r["steps"]) == 2)
    assert [(s["kind"], s["state"]) for s in running["steps"]] == [("callback", "pending"), ("step", "pending")]
    polling, answers = long_poll_held(service, monkeypatch, "status-held")
    try:
        STEP_GATE.set()
        service.wait_until("status-held", "waiting")
        token = sign(service.http, "status-held:1")
        assert (
            service.http.post("/resolve", json={"id": "status-held:1", "value": 2, "token": token}).status_code == 200
        )
    finally:
        STEP_GATE.set()
        polling.join()

    [answer] = answers
    assert (answer.json()["status"], answer.json()["result"]) == ("done", ["released", 2])


def test_a_null_result_is_not_folded_into_a_step(service: Service) -> None:
    """Nothing is saved by marking null, and a reader would see a value where there is none."""
    assert service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "status-null"}).status_code == 201
    service.wait_until("status-null", "waiting")
    token = sign(service.http, "status-null:1")
    assert service.http.post("/resolve", json={"id": "status-null:1", "value": None, "token": token}).status_code == 200

    run = service.wait_for("status-null")

    assert (run["status"], run["result"]) == ("done", None)
    [wait] = run["steps"]
    assert (wait["state"], wait["result"], wait["result_is_run_result"]) == ("resolved", None, False)


def test_a_sleeping_run_is_waiting(service: Service) -> None:
    body = {"pipeline": "sleeps", "id": "status-asleep", "params": {"seconds": 120}}
    assert service.http.post("/runs", json=body).status_code == 201

    run = service.wait_until("status-asleep", "waiting")

    assert [(step["kind"], step["state"]) for step in run["steps"]] == [("sleep", "pending")]


def test_a_cancelled_runs_wait_says_it_was_cancelled(service: Service) -> None:
    assert service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "status-cancel"}).status_code == 201
    service.wait_until("status-cancel", "waiting")
    assert service.http.post("/runs/status-cancel/cancel").status_code == 200

    run = service.http.get("/runs/status-cancel").json()

    assert run["status"] == "cancelled"
    [wait] = run["steps"]
    assert (wait["kind"], wait["state"], wait["error"]) == ("callback", "rejected_canceled", "cancelled")


def test_params_that_do_not_fit_are_refused_naming_each_by_its_path(service: Service) -> None:
    body = {"pipeline": "notebook_job", "id": "status-bad", "params": {"job": "j", "params": {"count": 4}}}

    refused = service.http.post("/runs", json=body)

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == "bad params for notebook_job: params.count: Input should be a valid string"


def test_asking_again_for_a_run_answers_with_the_whole_run(service: Service) -> None:
    """The repeat of a start is a read of the run as it is: steps, links and all."""
    jobs = service.runtime.workspace.jobs.list(name=service.runtime.settings.demo_job_name)
    [job] = list(jobs)
    body = {"pipeline": "notebook_job", "id": "status-again", "params": {"job": job.settings.name}}
    assert service.http.post("/runs", json=body).status_code == 201
    done = service.wait_for("status-again")

    again = service.http.post("/runs", json=body)

    assert again.status_code == 200, again.text
    assert [step["kind"] for step in again.json()["steps"]] == [step["kind"] for step in done["steps"]]
    assert again.json()["databricks_runs"][0]["url"] == done["databricks_runs"][0]["url"] is not None


# -- the pure parts, on records made up here ---------------------------------------------


def record(**tags: str) -> Any:
    return SimpleNamespace(tags=tags)


def stored(data: Any, promise_id: str = "r") -> Any:
    return SimpleNamespace(id=promise_id, param=SimpleNamespace(data=data), tags={ORIGIN: promise_id})


def test_a_stored_call_reads_what_the_sdk_wrote_and_nothing_else() -> None:
    assert stored_call(stored({"func": "f", "args": [1, 2], "kwargs": {"a": 1}})) == StoredCall("f", [1, 2], {"a": 1})
    assert stored_call(stored({"func": "f"})) == StoredCall("f", [], {})
    assert stored_call(stored({"func": "f", "args": "12", "kwargs": ["a"]})) == StoredCall("f", [], {})
    assert stored_call(stored({"args": []})) is None
    assert stored_call(stored("a step's value")) is None


def test_a_run_is_a_root_promise_that_holds_a_call() -> None:
    assert is_run(stored({"func": "notebook_job"}))
    assert not is_run(stored(None))  # a root promise made by hand, not a run
    child = stored({"func": "dara.watch_run"}, "r:3")
    child.tags = {ORIGIN: "r"}
    assert not is_run(child)


def test_each_kind_of_promise_is_told_by_its_tags() -> None:
    assert made_by(record(**{TIMER: "true"})) == "sleep"
    assert made_by(record(**{EXTERNAL: "true"})) == "promise"
    assert made_by(record(**{SCOPE: "local"})) == "run"
    assert made_by(record(**{SCOPE: "global"})) == "call"


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"__type": "error", "message": "boom"}, "boom"),
        ({"message": 3}, "{'message': 3}"),  # not a message: the value as text
        ("a bare string", "a bare string"),
        (None, "None"),
    ],
)
def test_a_rejections_message_is_its_message_or_the_value_as_text(stored: Any, message: str) -> None:
    assert error_message(stored) == message


def test_a_databricks_run_link_names_its_job_only_when_the_job_id_is_a_number() -> None:
    host = "https://dbc.example.com"
    assert _databricks_run({"run_id": 5, "job_id": 7, "url": "x"}, host) == DatabricksRun(
        job_id=7, run_id=5, url=f"{host}/jobs/7/runs/5"
    )
    assert _databricks_run({"run_id": 5, "job_id": "7", "url": "x"}, host) == DatabricksRun(
        job_id=None, run_id=5, url=f"{host}/#job/runs/5"
    )


def test_a_step_is_shown_once_only_if_its_result_is_the_runs_as_json_too() -> None:
    def step(result: Any, state: str = "resolved") -> StepView:
        return StepView(id="r:1", name="s", kind="step", state=state, started_at=datetime.now(), result=result)

    one, true, pending, same = step(1), step(True), step(True, "pending"), step({"a": 1})
    _show_once([one, true, pending], True)  # 1 == True in Python, not in JSON
    _show_once([same], {"a": 1})

    assert [(s.result, s.result_is_run_result) for s in (one, true, pending, same)] == [
        (1, False),
        (None, True),
        (True, False),
        (None, True),
    ]


@pytest.mark.parametrize(
    ("pending", "waiting"),
    [
        ({"callback"}, True),
        ({"sleep", "watcher"}, True),  # a watcher outlives the wait it watches: it says nothing
        ({"callback", "step"}, False),  # a step runs beside the wait
        ({"callback", "call"}, False),  # so does a call to another worker
        ({"watcher"}, False),
        (set(), False),  # nothing pending: between two operations
    ],
)
def test_a_run_is_waiting_while_only_waits_are_pending(pending: set[str], waiting: bool) -> None:
    steps = [
        StepView(id=f"r:{n}", name=None, kind=kind, state="pending", started_at=datetime.now())  # type: ignore[arg-type]
        for n, kind in enumerate(sorted(pending), 1)
    ]
    steps.append(StepView(id="r:9", name="s", kind="step", state="resolved", started_at=datetime.now()))
    assert _only_waits_pending(steps) is waiting


def test_a_refusal_lists_what_there_is_or_says_there_is_none() -> None:
    assert str(PipelineNotFound("x", [])) == "no pipeline named 'x'; known: none"
    assert str(PipelineNotFound("x", ["b", "a"])) == "no pipeline named 'x'; known: a, b"
    assert str(BadParams.invalid("p", ["one", "two"])) == "bad params for p: one; two"
