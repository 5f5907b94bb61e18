"""The runtime's :class:`~app.durable.telemetry.Telemetry`: what the durable core reports
becomes Prometheus metrics (app.metrics), OpenTelemetry spans when tracing is on
(app.tracing), and the run id in log lines (app.logs).

A pipeline replays from its first line on every execution, so it passes its earlier
waits again each time; and a pipeline that ends while a wait it created in that
execution was still pending (a failure that abandoned its callback) ends once more on
the next execution, because the SDK settles the run only then. So a wait, and a run's
end, is counted (and traced) the first time this worker sees it; what was counted is
kept in a bounded set. A run that moves to another worker (a takeover, or any resume
on a multi-worker backend) is replayed there from the start, and that worker counts its
earlier waits (and such a repeated end) once more: figures summed over several workers
can count those twice.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Iterator

from resonate.types import PromiseRecord

from app.durable.telemetry import Execution
from app.logs import RUN_ID, bind_run
from app.metrics import Metrics
from app.tracing import Tracing

logger = logging.getLogger("app.runs")

#: Waits and run ends remembered as counted; past this many, the oldest are forgotten.
REMEMBERED = 50_000


class _Once:
    """Says yes to each key the first time only (of the last ``REMEMBERED`` keys)."""

    def __init__(self) -> None:
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def first(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        return True


class Observability:
    def __init__(self, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self._once = _Once()

    @contextlib.contextmanager
    def execution(self, execution: Execution) -> Iterator[None]:
        token = bind_run(execution.run_id)
        span = self.tracing.execution(execution) if self.tracing else contextlib.nullcontext()
        try:
            with span:
                yield
        finally:
            # A run id may be used again later: its start time tells the runs apart.
            if execution.status is not None and self._once.first(f"{execution.run_id}@{execution.meta.started_at}"):
                self._ended(execution)
            RUN_ID.reset(token)

    def _ended(self, execution: Execution) -> None:
        now_ns = time.time_ns()
        started = execution.meta.started_at
        seconds = (now_ns / 1e9 - started / 1000) if started else None
        self.metrics.run_ended(execution.pipeline, execution.status or "", seconds)
        if self.tracing is not None:
            self.tracing.run_ended(execution, now_ns)
        took = f" after {seconds:.1f} s" if seconds is not None else ""
        logger.info("run %s (%s) ended %s%s", execution.run_id, execution.pipeline, execution.status, took)

    def step(self, run_id: str, step_id: str, name: str) -> contextlib.AbstractContextManager[None]:
        return self.tracing.step(run_id, step_id, name) if self.tracing else contextlib.nullcontext()

    def step_retried(self, name: str, reason: str) -> None:
        self.metrics.step_retried(name, reason)

    def wait_passed(self, run_id: str, pipeline: str, record: PromiseRecord) -> None:
        if not self._once.first(f"{record.id}@{record.created_at}"):
            return
        self.metrics.wait_passed(pipeline, record)
        if self.tracing is not None:
            self.tracing.wait(run_id, pipeline, record)
