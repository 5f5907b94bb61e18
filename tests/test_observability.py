"""What operators watch: GET /metrics, request ids, and runs' outcomes, through real HTTP.

Metrics are read back the way Prometheus reads them (prometheus-client's own parser of
the text a scrape returns); the JSON log format and traces have their own modules
(tests/test_json_logs.py, tests/test_tracing.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.workspace.deploy import demo_job_settings, import_notebooks
from steps.jobs import upsert_job
from tests.harness import Service, make_settings, running_service, sign

TEST_NOTEBOOKS = Path(__file__).parent / "notebooks"

TOKEN = "metrics-api-token-0123456789"

type Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(service: Service, **headers: str) -> Samples:
    """Every sample of ``GET /metrics``, by name and labels."""
    response = service.http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it was never set (as Prometheus reads an absent series)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def resolve(service: Service, promise_id: str, value: object) -> None:
    body = {"id": promise_id, "value": value, "token": sign(service.http, promise_id)}
    response = service.http.post("/resolve", json=body)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("observed"))) as svc:
        # A job whose notebook fails before its callback cell: its watcher rejects the wait.
        w = svc.runtime.workspace
        notebook = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)["no_callback"]
        upsert_job(w, demo_job_settings("no_callback", notebook, cluster=None))
        yield svc


def test_a_finished_run_and_the_callback_that_resumed_it_are_counted(service: Service) -> None:
    """The demo job's notebook calls back over HTTP; the run, its wait and the resume show."""
    before = scrape(service)
    body = {"pipeline": "notebook_job", "id": "metrics-demo", "params": {"job": "dara-demo", "params": {"name": "m"}}}
    assert service.http.post("/runs", json=body).status_code == 201

    assert service.wait_for("metrics-demo")["status"] == "done"
    after = scrape(service)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("dara_runs_started_total", pipeline="notebook_job") == 1
    assert grew("dara_runs_ended_total", pipeline="notebook_job", status="done") == 1
    assert grew("dara_run_duration_seconds_count", pipeline="notebook_job", status="done") == 1
    assert grew("dara_wait_duration_seconds_count", pipeline="notebook_job", settled="resolved") == 1
    assert grew("dara_callback_resume_latency_seconds_count", pipeline="notebook_job") == 1
    assert grew("dara_callback_resume_latency_seconds_sum", pipeline="notebook_job") > 0
    assert value(after, "dara_backend_up", backend="in-process") == 1


def test_a_wait_replayed_after_a_later_resume_is_counted_once(service: Service) -> None:
    """waits_then_sleeps passes its wait on two executions (the sleep resumes it again)."""
    assert service.http.post("/runs", json={"pipeline": "waits_then_sleeps", "id": "metrics-replay"}).status_code == 201
    service.wait_until("metrics-replay", "waiting")
    resolve(service, "metrics-replay:1", "ok")

    assert service.wait_for("metrics-replay")["status"] == "done"
    samples = scrape(service)

    assert value(samples, "dara_wait_duration_seconds_count", pipeline="waits_then_sleeps", settled="resolved") == 1
    assert value(samples, "dara_callback_resume_latency_seconds_count", pipeline="waits_then_sleeps") == 1
    assert value(samples, "dara_runs_ended_total", pipeline="waits_then_sleeps", status="done") == 1


def test_a_failed_run_its_databricks_error_and_a_step_retry_are_counted(service: Service) -> None:
    body = {"pipeline": "notebook_job", "id": "metrics-no-job", "params": {"job": "424242"}}
    assert service.http.post("/runs", json=body).status_code == 201
    flaky = {"pipeline": "retries_a_step", "id": "metrics-flaky", "params": {"key": "metrics-flaky"}}
    assert service.http.post("/runs", json=flaky).status_code == 201

    assert service.wait_for("metrics-no-job")["status"] == "failed"
    assert service.wait_for("metrics-flaky")["status"] == "done"
    samples = scrape(service)

    # Failing abandons the run's callback wait, so the pipeline ends on two executions:
    # the run still ended once.
    assert value(samples, "dara_runs_ended_total", pipeline="notebook_job", status="failed") == 1
    assert value(samples, "dara_databricks_api_errors_total", status="404", code="RESOURCE_DOES_NOT_EXIST") >= 1
    assert value(samples, "dara_step_retries_total", step="fails_once_then_echoes", reason="transient") == 1


def test_a_rejected_wait_and_a_timed_out_wait_are_counted_as_such(service: Service) -> None:
    """A wait the pipeline gets past by failing still ends: by a reject (a callback's, or
    its watcher's when the job ended without calling back), or by its deadline."""
    before = scrape(service)
    for run_id, params in (("metrics-rejected", {}), ("metrics-timed-out", {"timeout_seconds": 1})):
        start = {"pipeline": "waits_for_callback", "id": run_id, "params": params}
        assert service.http.post("/runs", json=start).status_code == 201
    silent = {"pipeline": "notebook_job", "id": "metrics-silent", "params": {"job": "no_callback"}}
    assert service.http.post("/runs", json=silent).status_code == 201
    service.wait_until("metrics-rejected", "waiting")
    token = sign(service.http, "metrics-rejected:1")
    rejected = service.http.post("/reject", json={"id": "metrics-rejected:1", "error": "no", "token": token})
    assert rejected.status_code == 200, rejected.text

    assert service.wait_for("metrics-rejected")["status"] == "failed"
    assert service.wait_for("metrics-timed-out")["status"] == "timed_out"
    assert service.wait_for("metrics-silent", timeout=120)["status"] == "failed"
    after = scrape(service)

    def grew(pipeline: str, settled: str) -> float:
        labels = {"pipeline": pipeline, "settled": settled}
        return value(after, "dara_wait_duration_seconds_count", **labels) - value(
            before, "dara_wait_duration_seconds_count", **labels
        )

    assert (grew("waits_for_callback", "rejected"), grew("waits_for_callback", "rejected_timedout")) == (1, 1)
    assert (grew("notebook_job", "rejected"), grew("notebook_job", "resolved")) == (1, 0)


def test_a_cancelled_run_is_counted(service: Service) -> None:
    assert (
        service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "metrics-cancel"}).status_code == 201
    )
    service.wait_until("metrics-cancel", "waiting")

    assert service.http.post("/runs/metrics-cancel/cancel").status_code == 200

    samples = scrape(service)
    assert value(samples, "dara_runs_ended_total", pipeline="waits_for_callback", status="cancelled") == 1
    assert value(samples, "dara_run_duration_seconds_count", pipeline="waits_for_callback", status="cancelled") == 1


def test_backend_health_is_the_check_health_runs(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down() -> str:
        return "the database does not answer"

    monkeypatch.setattr(service.runtime, "backend_problem", down)

    assert service.http.get("/health").status_code == 503
    assert value(scrape(service), "dara_backend_up", backend="in-process") == 0
    monkeypatch.undo()
    assert value(scrape(service), "dara_backend_up", backend="in-process") == 1


def test_openmetrics_is_served_when_asked_for(service: Service) -> None:
    response = service.http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_metrics_need_the_api_token_and_each_service_counts_its_own(service: Service, tmp_path: Path) -> None:
    """A second service in the same process: its own registry, so no clash and no shared counts."""
    started = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "counted-here"})
    assert started.status_code == 201, started.text
    with running_service(make_settings(tmp_path, deploy_on_start=False, api_token=TOKEN)) as guarded:
        refused = guarded.http.get("/metrics")
        samples = scrape(guarded, Authorization=f"Bearer {TOKEN}")

    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == (
        "missing API token: no Authorization header; send `Authorization: Bearer <DARA_API_TOKEN>`"
    )
    assert not [key for key in samples if key[0] == "dara_runs_started_total"]
    assert value(scrape(service), "dara_runs_started_total", pipeline="waits_for_callback") >= 1


# -- request ids ---------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed_and_another_replaced(service: Service) -> None:
    sent = service.http.get("/health", headers={"X-Request-Id": "trace-1234_abc.DEF:9"})
    forged = service.http.get("/health", headers={"X-Request-Id": 'x" level="ERROR'})
    too_long = service.http.get("/health", headers={"X-Request-Id": "a" * 129})
    none = service.http.get("/health")
    refused = service.http.get("/runs", headers={"Host": "evil.example"})

    assert refused.status_code == 400  # turned away by the host guard, and still given an id
    assert sent.headers["x-request-id"] == "trace-1234_abc.DEF:9"
    for response in (forged, too_long, none, refused):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), response.headers
    assert len({forged.headers["x-request-id"], too_long.headers["x-request-id"], none.headers["x-request-id"]}) == 3
