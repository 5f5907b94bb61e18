"""OpenTelemetry spans for runs, their executions, steps and waits -- an optional extra.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (Databricks Apps set it when app
telemetry is on) and the extra is installed (``pip install -e '.[otel]'``). Without
the endpoint nothing here is imported; with it but without the extra, DARA logs a
warning once and runs as before. Each runtime has its own ``TracerProvider`` (not the
process-wide one), exporting in batches over OTLP, and flushes it when it stops.

A run is one trace, whichever workers and restarts it spans: its trace id is derived
from the run id, so every execution finds it without storing anything (a run id used
again, once its first run was lost or deleted, lands in the same trace).

- ``dara.run``: the whole run, from its start to its end, exported when it ends
  (with a span id also derived from the run id: the executions' parent).
- ``dara.execution``: one execution of the pipeline, from its first line to its end or
  its next suspension (``dara.outcome``: ``suspended``, ``done``, ``failed``,
  ``timed_out``). A pipeline replays after every resume and after a restart, so a run
  that waited once has two executions.
- ``dara.step``: a step that really ran (with its retries). A replay returns recorded
  results without running them, so a step appears once, under the execution that ran it.
- ``dara.wait``: a wait, from its promise's creation to its settlement (the backend's
  clock), under the execution that got past it first on this worker.

Run watchers are not traced (they look at Databricks every 30 s for as long as a wait
lasts); the metrics count their calls.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from resonate.types import PromiseRecord

from app.durable.telemetry import Execution
from app.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

TRACER = "dara"
#: Set while the root span of a run is created, so the id generator hands out the run's
#: own ids (see :meth:`Tracing.run_ended` and app.tracing_provider).
_RUN_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("dara_run_ids", default=None)


def run_ids(run_id: str) -> tuple[int, int]:
    """The trace id and root span id of run ``run_id``: the same on every worker."""
    digest = hashlib.sha256(f"dara-run/{run_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16]) or 1  # 0 is not a valid id
    span_id = int.from_bytes(digest[16:24]) or 1
    return trace_id, span_id


class Tracing:
    """The spans of one runtime; built by :meth:`configure`, None when tracing is off."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer(TRACER)

    @classmethod
    def configure(cls, settings: Settings) -> Tracing | None:
        """Tracing as ``settings`` ask: None without an endpoint, or without the extra."""
        if not settings.otel_endpoint:
            return None
        try:
            # Needs the extra: the SDK, and the exporter for the protocol, imported on use.
            provider = importlib.import_module("app.tracing_provider").build(settings, _RUN_IDS)
        except ImportError as exc:
            logger.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s); "
                "running without traces. Install it with: pip install -e '.[otel]'",
                exc,
            )
            return None
        logger.info("exporting traces to %s over OTLP (%s)", settings.otel_endpoint, settings.otel_protocol)
        return cls(provider)

    def _run_context(self, run_id: str) -> Any:
        """A context whose current span is run ``run_id``'s root, wherever that is exported."""
        trace = self._trace
        trace_id, span_id = run_ids(run_id)
        root = trace.SpanContext(
            trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(root))

    @contextlib.contextmanager
    def execution(self, execution: Execution) -> Iterator[None]:
        attributes = {"dara.run_id": execution.run_id, "dara.pipeline": execution.pipeline}
        with self.tracer.start_as_current_span(
            "dara.execution",
            context=self._run_context(execution.run_id),
            attributes=attributes,
            # Suspending is how an execution usually ends: not an error. Set below.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            finally:
                span.set_attribute("dara.outcome", execution.status or "suspended")
                self._set_status(span, execution)

    def run_ended(self, execution: Execution, ended_ns: int) -> None:
        """Export the run's root span, now that it has ended (it has no start otherwise)."""
        if not execution.meta.started_at:
            return  # a run started before DARA recorded start times
        token = _RUN_IDS.set(run_ids(execution.run_id))
        try:
            span = self.tracer.start_span(
                "dara.run",
                context=self._trace.set_span_in_context(self._trace.INVALID_SPAN),  # a root
                start_time=execution.meta.started_at * 1_000_000,
                attributes={
                    "dara.run_id": execution.run_id,
                    "dara.pipeline": execution.pipeline,
                    "dara.status": execution.status or "",
                    "dara.started_by": execution.meta.started_by,
                },
            )
        finally:
            _RUN_IDS.reset(token)
        self._set_status(span, execution)
        span.end(end_time=ended_ns)

    @contextlib.contextmanager
    def step(self, run_id: str, step_id: str, name: str) -> Iterator[None]:
        if not self._trace.get_current_span().get_span_context().is_valid:
            yield  # a watcher's step: not traced (see the module's docstring)
            return
        attributes = {"dara.run_id": run_id, "dara.step_id": step_id, "dara.step": name}
        with self.tracer.start_as_current_span("dara.step", attributes=attributes):
            yield

    def wait(self, run_id: str, pipeline: str, record: PromiseRecord) -> None:
        if not (record.created_at and record.settled_at):
            return
        span = self.tracer.start_span(
            "dara.wait",
            start_time=record.created_at * 1_000_000,
            attributes={
                "dara.run_id": run_id,
                "dara.pipeline": pipeline,
                "dara.promise_id": record.id,
                "dara.settled": record.state,
            },
        )
        if record.state != "resolved":
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, record.state))
        span.end(end_time=max(record.settled_at, record.created_at) * 1_000_000)

    def _set_status(self, span: Any, execution: Execution) -> None:
        if execution.status in ("failed", "timed_out"):
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(execution.error or execution.status)))
            if execution.error is not None:
                span.record_exception(execution.error)

    def flush(self, timeout_ms: int = 5000) -> bool:
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Export what is buffered (waiting 2 s at most), then stop. An unreachable
        collector can still hold an export already under way for the exporter's own
        timeout (OTEL_EXPORTER_OTLP_TIMEOUT)."""
        self.provider.force_flush(2000)
        self.provider.shutdown()
