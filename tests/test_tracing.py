"""Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, a run is one trace of run, execution,
step and wait spans. The OTLP exporter is swapped for the SDK's in-memory one; the
provider, the batch processor and everything above them are DARA's real ones."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import tracing_provider
from app.tracing import Tracing, run_ids
from tests.harness import Service, make_settings, running_service, sign

COLLECTOR = "http://collector.invalid:4318"


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing_provider, "span_exporter", lambda settings: exporter)
    return exporter


@pytest.fixture
def traced(tmp_path: Path, exported: InMemorySpanExporter) -> Iterator[Service]:
    with running_service(make_settings(tmp_path, deploy_on_start=False, otel_endpoint=COLLECTOR)) as svc:
        yield svc


def spans_of(service: Service, exporter: InMemorySpanExporter, run_id: str, *, until: str) -> list[ReadableSpan]:
    """The spans of ``run_id`` exported so far, once one named ``until`` is among them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert service.runtime.tracing is not None
        service.runtime.tracing.flush()
        spans = [s for s in exporter.get_finished_spans() if (s.attributes or {}).get("dara.run_id") == run_id]
        if any(s.name == until for s in spans):
            return spans
        time.sleep(0.05)
    raise TimeoutError(f"no {until} span of {run_id} was exported")


def test_a_run_is_one_trace_of_its_executions_steps_and_waits(traced: Service, exported: InMemorySpanExporter) -> None:
    started = traced.http.post("/runs", json={"pipeline": "records_a_step_then_waits", "id": "traced"})
    assert started.status_code == 201, started.text
    traced.wait_until("traced", "waiting")
    token = sign(traced.http, "traced:2")
    assert traced.http.post("/resolve", json={"id": "traced:2", "value": "v", "token": token}).status_code == 200
    assert traced.wait_for("traced")["status"] == "done"

    spans = spans_of(traced, exported, "traced", until="dara.run")
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    [run] = by_name["dara.run"]
    [step] = by_name["dara.step"]
    [wait] = by_name["dara.wait"]
    executions = by_name["dara.execution"]
    trace_id, root_span_id = run_ids("traced")
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert run.parent is None and run.context.span_id == root_span_id
    assert run.attributes["dara.status"] == "done" and run.attributes["dara.pipeline"] == "records_a_step_then_waits"
    # Suspended on the wait, then resumed by the callback: two executions under the run.
    assert [e.attributes["dara.outcome"] for e in sorted(executions, key=lambda e: e.start_time)] == [
        "suspended",
        "done",
    ]
    assert {e.parent.span_id for e in executions} == {root_span_id}
    # The step ran in the first execution only; the replay returned its recorded result.
    first = min(executions, key=lambda e: e.start_time)
    assert step.attributes["dara.step"] == "echo" and step.parent.span_id == first.context.span_id
    # The wait spans its promise's life, from creation to the callback.
    assert wait.attributes["dara.promise_id"] == "traced:2" and wait.attributes["dara.settled"] == "resolved"
    assert wait.parent.span_id == max(executions, key=lambda e: e.start_time).context.span_id
    assert run.start_time <= wait.start_time < wait.end_time <= run.end_time


def test_without_the_extra_the_service_runs_untraced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set (as Databricks Apps do) but no OpenTelemetry SDK installed."""
    for module in [name for name in sys.modules if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]:
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.delitem(sys.modules, "app.tracing_provider")  # imported afresh, and fails
    settings = make_settings(tmp_path, deploy_on_start=False, otel_endpoint=COLLECTOR)

    with caplog.at_level(logging.WARNING, logger="app.tracing"), running_service(settings) as service:
        started = service.http.post(
            "/runs", json={"pipeline": "retries_a_step", "id": "untraced", "params": {"key": "untraced"}}
        )
        assert started.status_code == 201, started.text
        assert service.wait_for("untraced")["status"] == "done"
        assert service.runtime.tracing is None

    assert "pip install -e '.[otel]'" in caplog.text


def test_no_endpoint_no_tracing(tmp_path: Path) -> None:
    assert Tracing.configure(make_settings(tmp_path)) is None


def test_the_exporter_speaks_the_protocol_asked_for(tmp_path: Path) -> None:
    http = tracing_provider.span_exporter(make_settings(tmp_path, otel_endpoint="http://localhost:4318/"))
    grpc = tracing_provider.span_exporter(
        make_settings(tmp_path, otel_endpoint="http://localhost:4314", otel_protocol="grpc")
    )

    assert type(http).__module__.endswith("proto.http.trace_exporter")
    assert http._endpoint == "http://localhost:4318/v1/traces"
    assert type(grpc).__module__.endswith("proto.grpc.trace_exporter")
