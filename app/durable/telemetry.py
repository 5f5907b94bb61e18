"""What the durable core reports about runs, steps and waits, and to whom.

The core (driver, steps, waits) knows when a run's execution starts and ends, when a
step runs or retries, and when a pipeline gets past a wait; it should not know about
Prometheus, OpenTelemetry or log formats. So it reports to a :class:`Telemetry`, a
small protocol with a no-op default, and the runtime supplies the real one
(app.observability) as a Resonate dependency, the way steps get their clients. One per
Resonate instance, not per process: tests that run several services in one process
keep their numbers apart.

The SDK keys dependencies by concrete type, so the runtime registers a
:class:`TelemetryHook` holding its implementation, and the core asks for that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from resonate.context import Context as ResonateContext
from resonate.types import PromiseRecord

from app.durable.run_meta import RunMeta


@dataclass
class Execution:
    """One execution of a run's pipeline: from the first line (or a replay) to its end
    or its next suspension. The driver sets ``status`` when the run itself ends."""

    run_id: str
    pipeline: str
    meta: RunMeta
    #: ``done``, ``failed`` or ``timed_out`` once the pipeline returned or raised;
    #: None while it runs, and after it suspended.
    status: str | None = None
    error: BaseException | None = None


class Telemetry(Protocol):
    def execution(self, execution: Execution) -> contextlib.AbstractContextManager[None]:
        """Around one execution of a run; ``execution.status`` says how it ended."""
        ...

    def step(self, run_id: str, step_id: str, name: str) -> contextlib.AbstractContextManager[None]:
        """Around one execution of a step (its retries included)."""
        ...

    def step_retried(self, name: str, reason: str) -> None:
        """A step failed with a ``transient`` or ``capacity`` error and will try again."""
        ...

    def wait_passed(self, run_id: str, pipeline: str, record: PromiseRecord) -> None:
        """A pipeline got past a wait (its value or its error): ``record`` is the settled promise.

        Called on every execution that passes it, replays included: the implementation
        decides which to count.
        """
        ...


class NoTelemetry:
    """Reports nowhere: the default when the runtime registered nothing (unit tests)."""

    @contextlib.contextmanager
    def execution(self, execution: Execution) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def step(self, run_id: str, step_id: str, name: str) -> Iterator[None]:
        yield

    def step_retried(self, name: str, reason: str) -> None:
        pass

    def wait_passed(self, run_id: str, pipeline: str, record: PromiseRecord) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()


@dataclass(frozen=True)
class TelemetryHook:
    """The dependency the runtime registers: its :class:`Telemetry`, under a type of ours."""

    telemetry: Telemetry


def telemetry_of(ctx: ResonateContext) -> Telemetry:
    try:
        return ctx.get_dependency(TelemetryHook).telemetry
    except KeyError:
        return NO_TELEMETRY


def settled_record(ctx: ResonateContext, promise_id: str) -> PromiseRecord | None:
    """The settled record of a promise this execution just awaited, without a request.

    The SDK keeps every record it created or was sent during an execution in its
    effects cache, which is where the awaited future got its value from; reading it
    costs nothing, where ``promises.get`` would be a request per wait on every replay.
    Private to resonate-sdk (pinned at 0.8.1): if it moves, waits go unreported, and
    tests/test_observability.py says so.
    """
    effects: Any = getattr(getattr(ctx, "_state", None), "effects", None)
    record = getattr(effects, "cache", {}).get(promise_id)
    return record if isinstance(record, PromiseRecord) and record.state != "pending" else None
