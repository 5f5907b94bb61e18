"""The OpenTelemetry SDK half of app.tracing: imported only when tracing is on.

It needs the optional extra (``pip install -e '.[otel]'``); app.tracing imports it on
use, so a service without the extra never does.
"""

from __future__ import annotations

import contextvars

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from app.settings import Settings


class RunRootIds(RandomIdGenerator):
    """Random ids, except while a run's root span is created: then the run's own ids,
    which its executions (on any worker) already name as their parent."""

    def __init__(self, forced: contextvars.ContextVar[tuple[int, int] | None]) -> None:
        self._forced = forced

    def generate_trace_id(self) -> int:
        forced = self._forced.get()
        return forced[0] if forced else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = self._forced.get()
        return forced[1] if forced else super().generate_span_id()


def span_exporter(settings: Settings) -> SpanExporter:
    """The OTLP exporter for ``settings`` (http/protobuf unless OTEL_EXPORTER_OTLP_PROTOCOL=grpc).

    Headers, certificates, timeouts and compression come from the standard
    OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
    """
    endpoint = (settings.otel_endpoint or "").rstrip("/")
    if settings.otel_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    # The exporter appends /v1/traces to an endpoint it reads from the environment, but
    # takes one given to it as the whole URL.
    return HttpExporter(endpoint=f"{endpoint}/v1/traces")


def build(settings: Settings, forced_ids: contextvars.ContextVar[tuple[int, int] | None]) -> TracerProvider:
    """A provider of its own (not the process-wide one), exporting in batches."""
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the name, as usual.
    resource = Resource.create({"service.name": "dara"})
    provider = TracerProvider(resource=resource, id_generator=RunRootIds(forced_ids), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(span_exporter(settings)))
    return provider
