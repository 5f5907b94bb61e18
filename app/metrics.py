"""DARA's Prometheus metrics, served at ``GET /metrics`` (app.routers.metrics).

One :class:`Metrics` per runtime, each with its own ``CollectorRegistry`` rather than
prometheus-client's process-wide default: tests run several services in one process,
and each must count only its own runs. Every label takes values from a small, known
set -- pipeline and step names, statuses, Databricks error codes -- never a run id.

What feeds it, and from where:

- runs started (app.runtime ``start_run``) and ended, with their duration
  (app.observability, from the pipeline driver; a cancel, from app.services.cancelling);
- waits the pipeline got past, with how long each was pending, and for callbacks, how
  long from the callback's ``POST /resolve`` to the pipeline resuming
  (app.services.settling marks the callback, app.observability the resume);
- step retries (app.durable.step), by step and reason;
- Databricks calls the run watchers make (:meth:`Metrics.watcher_call`);
- every Databricks API answer that is an error, by HTTP status and ``error_code``
  (a response hook on the workspace client's HTTP session, so retries databricks-sdk
  makes itself are counted too);
- backend health, set from the check ``GET /health`` runs each time ``/metrics`` is read.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from typing import Any

import requests
from databricks.sdk import WorkspaceClient
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from resonate.types import PromiseRecord

logger = logging.getLogger(__name__)

#: Seconds, for things that take from seconds to a day: runs, waits.
LONG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, float("inf"))
#: Seconds, for a resume after a callback: milliseconds when all is well.
SHORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf"))

#: Callbacks remembered until their pipeline resumes here. A run resumed by another
#: worker never collects its entry, so the oldest are dropped past this many.
PENDING_CALLBACKS = 10_000

_ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
#: An error body larger than this is not parsed for its code.
_MAX_ERROR_BODY = 65_536


class Metrics:
    """The counters, histograms and gauges of one DARA runtime."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_started = Counter(
            "dara_runs_started", "Runs started (a new run id), by pipeline.", ["pipeline"], registry=r
        )
        self.runs_ended = Counter(
            "dara_runs_ended",
            "Runs that ended, by pipeline and status (done, failed, timed_out, cancelled).",
            ["pipeline", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "dara_run_duration_seconds",
            "From a run's start to its end, by pipeline and status.",
            ["pipeline", "status"],
            buckets=LONG_BUCKETS,
            registry=r,
        )
        self.wait_duration = Histogram(
            "dara_wait_duration_seconds",
            "How long a wait (ctx.promise()) was pending before it was settled, by pipeline and "
            "how it was settled (resolved, rejected, rejected_timedout, rejected_canceled).",
            ["pipeline", "settled"],
            buckets=LONG_BUCKETS,
            registry=r,
        )
        self.callback_resume = Histogram(
            "dara_callback_resume_latency_seconds",
            "From a callback settling a wait (POST /resolve or /reject) to the pipeline resuming "
            "past it, on this worker.",
            ["pipeline"],
            buckets=SHORT_BUCKETS,
            registry=r,
        )
        self.step_retries = Counter(
            "dara_step_retries",
            "Step retries, by step and reason (transient, capacity).",
            ["step", "reason"],
            registry=r,
        )
        self.watcher_calls = Counter(
            "dara_watcher_databricks_calls",
            "Databricks API calls the run watchers made, by call.",
            ["call"],
            registry=r,
        )
        self.databricks_errors = Counter(
            "dara_databricks_api_errors",
            "Databricks API answers that were errors, by HTTP status and error_code "
            "(none when the body had no code); the SDK's own retries included.",
            ["status", "code"],
            registry=r,
        )
        self.backend_up = Gauge(
            "dara_backend_up",
            "1 when the Resonate backend passes the check GET /health runs, else 0; set on each scrape.",
            ["backend"],
            registry=r,
        )
        self._callbacks: collections.OrderedDict[str, float] = collections.OrderedDict()

    # -- runs ------------------------------------------------------------------------

    def run_started(self, pipeline: str) -> None:
        self.runs_started.labels(pipeline).inc()

    def run_ended(self, pipeline: str, status: str, seconds: float | None) -> None:
        """A run ended; ``seconds`` is how long it took, None when unknown."""
        self.runs_ended.labels(pipeline, status).inc()
        if seconds is not None:
            self.run_duration.labels(pipeline, status).observe(max(seconds, 0.0))

    # -- waits and callbacks --------------------------------------------------------------

    def callback_settling(self, promise_id: str) -> None:
        """A callback is settling ``promise_id``: the clock for its resume starts now.

        Marked before the settle, because the pipeline may resume before the settle
        call returns to the route.
        """
        self._callbacks[promise_id] = time.monotonic()
        while len(self._callbacks) > PENDING_CALLBACKS:
            self._callbacks.popitem(last=False)

    def callback_lost(self, promise_id: str) -> None:
        """Something else settled ``promise_id`` first: its resume is not this callback's."""
        self._callbacks.pop(promise_id, None)

    def wait_passed(self, pipeline: str, record: PromiseRecord) -> None:
        """The pipeline got past the wait ``record`` for the first time on this worker."""
        if record.settled_at and record.created_at:
            seconds = max(record.settled_at - record.created_at, 0) / 1000
            self.wait_duration.labels(pipeline, record.state).observe(seconds)
        arrived = self._callbacks.pop(record.id, None)
        if arrived is not None:
            self.callback_resume.labels(pipeline).observe(time.monotonic() - arrived)

    # -- steps and watchers --------------------------------------------------------------

    def step_retried(self, step: str, reason: str) -> None:
        self.step_retries.labels(step, reason).inc()

    def watcher_call(self, call: str = "jobs.get_run", count: int = 1) -> None:
        """The run watchers called Databricks ``count`` times (one batched call counts once)."""
        self.watcher_calls.labels(call).inc(count)

    # -- Databricks errors -----------------------------------------------------------------

    def count_databricks_errors(self, workspace: WorkspaceClient) -> None:
        """Count every error answer ``workspace``'s HTTP session receives.

        databricks-sdk has no public hook for this; its session is a ``requests.Session``
        (``api_client._api_client._session`` in databricks-sdk 0.162), whose response
        hooks are requests' own API. If the SDK moves it, errors go uncounted and this
        logs why, rather than failing the service.
        """
        session = getattr(getattr(workspace.api_client, "_api_client", None), "_session", None)
        if not isinstance(session, requests.Session):
            logger.warning(
                "cannot count Databricks API errors: this databricks-sdk keeps no requests session where expected"
            )
            return
        session.hooks["response"].append(self._databricks_response)

    def _databricks_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code >= 400:
            self.databricks_errors.labels(str(response.status_code), _error_code(response)).inc()

    # -- backend -----------------------------------------------------------------------------

    def backend(self, kind: str, healthy: bool) -> None:
        self.backend_up.labels(kind).set(1 if healthy else 0)

    # -- exposition ----------------------------------------------------------------------------

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (OpenMetrics or Prometheus text)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _error_code(response: requests.Response) -> str:
    """The ``error_code`` of a Databricks error body, or ``none``; never free text."""
    if len(response.content or b"") > _MAX_ERROR_BODY:
        return "none"
    try:
        code = response.json().get("error_code")
    except (ValueError, AttributeError):
        return "none"
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else "none"
