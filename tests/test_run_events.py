"""Databricks job notifications (run events) on the HTTP double, and the backstop they pace:

* a run that dies without calling back fails as soon as Databricks says it ended, with
  the watchers' interval so long that nothing else could have noticed; a run that
  called back is left as it is, and an event that lies about a run still running is
  checked, not believed;
* the route takes only the notification destination's Basic auth (401), is off without
  it (404), says what to fix in a body it refuses (4xx), and acknowledges events for
  runs it does not know the same way, without a call to Databricks;
* with run events on, the listing of active runs makes at most its budget of calls a
  minute however many runs wait, and still catches a run whose event was lost.

The double plays Databricks: :meth:`JobsService.send_run_events` makes it POST the
event when a run ends, from a thread of its own, as Databricks does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.bundles.jobs import Job
from pydantic import ValidationError

from app.settings import PROJECT_ROOT
from scripts.databricks_double import DatabricksDouble
from scripts.jobs_service_double import CANCEL_RUN, GET_RUN, LIST_RUNS, PAGE_SIZE, JobsService
from tests.harness import Service, make_settings
from tests.test_run_watch import ManualClock, databricks_run, on_double, start, until

ROUTE = "/api/databricks/run-events"
USER, PASSWORD = "databricks", "run-events-password-0123456789"
AUTH = (USER, PASSWORD)
API_TOKEN = "api-token-for-run-events-0123456789"
#: The watchers' interval when only an event may explain what happens: an hour.
LONG = 3600


@contextmanager
def with_run_events(
    double: DatabricksDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    send: bool = True,
    **overrides: Any,
) -> Iterator[tuple[Service, JobsService]]:
    """The service on the double with run events on; the double sends them unless ``send`` is false."""
    settings = {"run_events_user": USER, "run_events_password": PASSWORD, **overrides}
    with on_double(double, tmp_path, monkeypatch, **settings) as (service, jobs):
        if send:
            jobs.send_run_events(service.url + ROUTE, USER, PASSWORD)
        yield service, jobs


def event(run_id: Any, event_type: str = "jobs.on_failure") -> dict[str, Any]:
    """A notification as Databricks' generic webhook destination sends it."""
    return {
        "event_type": event_type,
        "workspace_id": "1234567890123456",
        "run": {"run_id": run_id},
        "job": {"job_id": 4242, "name": "dara-watch"},
    }


def watched_run(service: Service, run_id: str) -> int:
    """The run's Databricks run id, once its watcher has looked at it (as it starts)."""
    databricks = databricks_run(service, run_id)["run_id"]
    until(lambda: service.runtime.watched_runs.get(databricks), f"{run_id}'s watcher to look at its run")
    return databricks


def checks_done(service: Service, checks: int) -> None:
    events = service.runtime.run_events
    until(lambda: events.checks >= checks and events.checking() == 0, f"{checks} run event check(s) to end")


def reads_of(jobs: JobsService, run_id: int) -> int:
    return sum(1 for r in jobs.double.requests_to("GET", GET_RUN) if r.query["run_id"] == [str(run_id)])


# -- what an event does -----------------------------------------------------------------


def test_a_run_that_dies_without_calling_back_fails_on_its_event(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchers look once an hour: only the event can explain a failure within the test."""
    with with_run_events(databricks_double, tmp_path, monkeypatch, watch_interval=LONG) as (service, jobs):
        start(service, "dies")
        start(service, "lives")
        dead = watched_run(service, "dies")
        watched_run(service, "lives")
        jobs.end(dead, "FAILED", message="Cluster lost")

        run = service.wait_for("dies", timeout=60)
        other = service.http.get("/runs/lives").json()

    assert run["status"] == "failed", run
    assert "ended FAILED without calling back" in run["error"] and "Cluster lost" in run["error"], run["error"]
    assert other["status"] == "waiting"
    assert jobs.deliveries == [(dead, 202)]
    assert reads_of(jobs, dead) == 1  # one runs/get, nothing else read
    assert jobs.calls(GET_RUN) == 1 and jobs.calls(LIST_RUNS) == 0


def test_a_run_that_called_back_is_left_as_it_is(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its notebook called back, then its job failed: the event is checked, the run stays done."""
    with with_run_events(databricks_double, tmp_path, monkeypatch, watch_interval=LONG) as (service, jobs):
        start(service, "calls-back")
        databricks = watched_run(service, "calls-back")
        widgets = jobs.runs[databricks].params
        resolved = service.http.post(
            "/api/resolve", json={"id": widgets["promise_id"], "value": 7, "token": widgets["callback_signature"]}
        )
        assert resolved.status_code == 200, resolved.text
        assert service.wait_for("calls-back")["result"] == 7
        jobs.end(databricks, "FAILED", message="failed after calling back")
        checks_done(service, 1)

        run = service.http.get("/runs/calls-back").json()

    assert (run["status"], run["result"], run["error"]) == ("done", 7, None)
    assert jobs.deliveries == [(databricks, 202)]
    assert jobs.double.requests_to("POST", CANCEL_RUN) == []


def test_an_event_is_checked_not_believed_and_repeats_cost_nothing(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events saying a run failed while it still runs: one read finds it running, the
    run goes on waiting, and neither the burst nor later repeats read it again."""
    with with_run_events(databricks_double, tmp_path, monkeypatch, watch_interval=LONG) as (service, jobs):
        start(service, "still-runs")
        databricks = watched_run(service, "still-runs")
        for _ in range(30):
            assert service.http.post(ROUTE, json=event(databricks), auth=AUTH).status_code == 202
        checks_done(service, 1)
        for _ in range(10):
            assert service.http.post(ROUTE, json=event(str(databricks)), auth=AUTH).status_code == 202

        run = service.http.get("/runs/still-runs").json()

    assert run["status"] == "waiting", run
    assert reads_of(jobs, databricks) == 1
    assert service.runtime.run_events.checks == 1


def test_events_for_runs_it_does_not_watch_are_acknowledged_alike_and_cost_nothing(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 end events for runs nobody here watches, and a start event for one it does,
    read nothing; the answer is the one an end event for a watched run gets, whose check
    (the one read) comes after them all."""
    with with_run_events(databricks_double, tmp_path, monkeypatch, watch_interval=LONG) as (service, jobs):
        start(service, "watched")
        databricks = watched_run(service, "watched")
        before = jobs.calls()

        unknown = [service.http.post(ROUTE, json=event(10**12 + n), auth=AUTH) for n in range(200)]
        started = service.http.post(ROUTE, json=event(databricks, "jobs.on_start"), auth=AUTH)
        known = service.http.post(ROUTE, json=event(databricks), auth=AUTH)
        checks_done(service, 1)
        calls = jobs.double.requests[before:]

    answers = {(r.status_code, r.text) for r in [*unknown, started, known]}
    assert answers == {(202, json.dumps({"status": "accepted"}, separators=(",", ":")))}
    assert [(r.path, r.query["run_id"]) for r in calls] == [(GET_RUN, [str(databricks)])]
    assert service.runtime.run_events.checks == 1


# -- the route ----------------------------------------------------------------------------


@pytest.fixture
def events_route(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """Run events on, and the rest of the API behind a token Databricks does not have."""
    with with_run_events(databricks_double, tmp_path, monkeypatch, send=False, api_token=API_TOKEN) as (service, _):
        yield service


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(USER, PASSWORD[:-1] + "x"),
        basic(USER + "x", PASSWORD),
        basic("", ""),
        {"Authorization": f"Bearer {API_TOKEN}"},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    ],
    ids=["none", "wrong-password", "wrong-user", "empty", "api-token", "not-base64", "no-colon"],
)
def test_only_the_destinations_credentials_get_in(events_route: Service, headers: dict[str, str]) -> None:
    refused = events_route.http.post(ROUTE, json=event(1), headers=headers)
    taken = events_route.http.post(ROUTE, json=event(1), headers=basic(USER, PASSWORD))

    assert refused.status_code == 401, refused.text
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert taken.status_code == 202, taken.text  # no API token needed: Databricks has none


def test_credentials_are_checked_before_the_body_is_read(events_route: Service) -> None:
    refused = events_route.http.post(ROUTE, content=b"{not json", headers={"Content-Type": "application/json"})
    assert refused.status_code == 401


def test_without_credentials_configured_the_route_is_off(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on_double(databricks_double, tmp_path, monkeypatch, watch_interval=LONG) as (service, _):
        answers = [
            service.http.post(ROUTE, json=event(1), auth=AUTH),
            service.http.post(ROUTE, content=b"junk"),
        ]

    assert [a.status_code for a in answers] == [404, 404]
    assert "DARA_RUN_EVENTS_USER" in answers[0].json()["detail"]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 422, "JSON"),
        (json.dumps([event(1)]).encode(), 422, "should be an object"),
        (json.dumps({"event_type": "jobs.on_failure"}).encode(), 422, "run"),
        (json.dumps(event(-5)).encode(), 422, "greater than or equal to 1"),
        (json.dumps(event(2**64)).encode(), 422, "less than or equal to"),
        (json.dumps(event("12abc")).encode(), 422, "valid integer"),
        (json.dumps(event(None)).encode(), 422, "valid integer"),
        (json.dumps(event(1, "jobs.on_failure<script>")).encode(), 422, "pattern"),
        (json.dumps(event(1, "x" * 500)).encode(), 422, "at most 128 characters"),
        (json.dumps({**event(1), "job": nested(100)}).encode(), 422, "nested"),
        (json.dumps({**event(1), "pad": "x" * (2 << 20)}).encode(), 413, "DARA_MAX_VALUE_BYTES"),
    ],
    ids=[
        "not-json",
        "array",
        "no-run",
        "negative-id",
        "huge-id",
        "id-not-a-number",
        "null-id",
        "bad-type",
        "long-type",
        "deep",
        "big",
    ],
)
def test_a_hostile_body_gets_a_4xx_that_says_what_to_fix(
    events_route: Service, body: bytes, status: int, says: str
) -> None:
    answer = events_route.http.post(ROUTE, content=body, headers={"Content-Type": "application/json"}, auth=AUTH)

    assert answer.status_code == status, answer.text
    assert says in json.dumps(answer.json()["detail"]), answer.text


# -- the backstop, paced -------------------------------------------------------------------


def test_the_backstop_listing_keeps_to_its_budget_and_still_catches_a_lost_event(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 runs wait (3 pages of the listing) and their watchers look every half second;
    the listing may make 2 calls a minute. Minute by minute of the listing's clock it
    makes exactly its budget, whatever the looks, and reads no run on its own. A run
    that dies with its event lost is still caught once a whole listing has missed it."""
    budget, waiting = 2, 60
    with with_run_events(
        databricks_double, tmp_path, monkeypatch, send=False, watch_interval=0.5, watch_calls_per_minute=budget
    ) as (service, jobs):
        active = service.runtime.active_runs
        clock = ManualClock()
        active.clock = clock
        for n in range(waiting):
            start(service, f"backstop-{n}")
        until(lambda: len(jobs.active()) == waiting, f"{waiting} runs to start")
        until(lambda: len(service.runtime.watched_runs) == waiting, "every watcher to look")

        def minute_of_calls() -> tuple[int, int]:
            listed, read = jobs.calls(LIST_RUNS), jobs.calls(GET_RUN)
            looked = active.lookups
            until(lambda: active.lookups >= looked + 2 * waiting, "every run looked up twice this minute")
            calls = jobs.calls(LIST_RUNS) - listed, jobs.calls(GET_RUN) - read
            clock.now += 60
            return calls

        minutes = [minute_of_calls() for _ in range(4)]
        assert minutes == [(budget, 0)] * 4
        assert active.listings >= 2  # 3 pages at 2 a minute: a whole listing every 1.5 minutes

        dead = databricks_run(service, "backstop-7")["run_id"]
        jobs.end(dead, "FAILED", message="Cluster lost")  # and Databricks' event is lost

        def caught() -> bool:
            minute_of_calls()
            return service.http.get("/runs/backstop-7").json()["status"] == "failed"

        until(caught, "the backstop to catch the dead run", timeout=120)
        reads = {int(r.query["run_id"][0]) for r in jobs.double.requests_to("GET", GET_RUN)}
        others = [service.http.get(f"/runs/backstop-{n}").json()["status"] for n in (0, 30, 59)]

    assert reads == {dead}
    assert others == ["waiting"] * 3
    assert jobs.deliveries == []  # no event was sent: the listing alone caught it
    assert waiting > 2 * PAGE_SIZE


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"run_events_user": USER}, "set both"),
        ({"run_events_password": PASSWORD}, "set both"),
        ({"run_events_user": USER, "run_events_password": "short"}, "at least 16 characters"),
    ],
)
def test_half_a_configuration_is_refused_at_start(tmp_path: Path, settings: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        make_settings(tmp_path, **settings)


def test_the_bundles_run_events_target_has_the_demo_job_notify_the_destination() -> None:
    """Only the run_events target: the dev and prod targets deploy an App, which no webhook reaches."""
    config = yaml.safe_load((PROJECT_ROOT / "databricks.yml").read_text())
    job = config["resources"]["jobs"]["dara_demo"]
    override = config["targets"]["run_events"]["resources"]["jobs"]["dara_demo"]
    destination = [{"id": "${var.run_events_destination}"}]

    assert override == {"webhook_notifications": {"on_success": destination, "on_failure": destination}}
    assert Job.from_dict({**job, **override}).webhook_notifications is not None
    assert "webhook_notifications" not in job
    assert "run_events_destination" in config["variables"]
