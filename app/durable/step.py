"""Running a plain, typed step function as a durable ``ctx.run`` child.

A step is an ordinary function (``def run_job(w: WorkspaceClient, job: str) -> JobRun``):
no Resonate context, no retry loop, no threads. This module adapts it for the SDK:

* **Injection.** A parameter annotated with :class:`StepInfo` or with the type of a
  dependency the runtime registered (``resonate.with_dependency``) is filled in here;
  the pipeline passes only the rest. Like FastAPI dependencies, by type.
* **Threads.** A synchronous step runs through :func:`asyncio.to_thread`, because the
  SDK runs steps on the event loop thread and a blocking ``databricks-sdk`` call there
  would stall the heartbeat and lose the lease.
* **Retries.** Transient failures (429, 5xx, timeouts, dropped connections) are retried
  with doubling delays a bounded number of times; anything else fails at once. The
  SDK's own retry policy cannot tell the two apart (it never sees the exception), so it
  is set to ``Never`` for steps and the loop lives here.
* **Names.** The settled value is ``{"step": name, "result": value}``, so the step's
  name is visible wherever its promise is read: ``GET /runs/{id}``, ``resonate promises
  get``, ``resonate tree``. A failure is raised as :class:`StepError`, whose message
  starts with the step's name.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import time
import typing
from dataclasses import dataclass
from typing import Any

from resonate.context import Context as ResonateContext

from app.durable.errors import StepError, is_capacity, is_transient
from app.durable.run_meta import ANONYMOUS, RUN_META, RunMeta, sdk_parameters


@dataclass(frozen=True)
class StepInfo:
    """Who is calling: injected into a step that declares a parameter of this type."""

    #: The step's own promise id, e.g. ``"foo:2"``.
    id: str
    #: The run (root promise) it belongs to, e.g. ``"foo"``.
    run_id: str
    #: The step promise's deadline in epoch ms. Fixed when the promise is created, so
    #: it is the same on every re-execution of this step and different for a later
    #: run that reuses the id (e.g. after the in-process server was restarted).
    deadline_ms: int
    #: The run's incarnation (app.durable.run_meta): callback tokens are bound to it.
    incarnation: str = ""
    #: Who started the run.
    started_by: str = ANONYMOUS

    @property
    def idempotency_token(self) -> str:
        """A token for at-most-once side effects (Databricks' ``idempotency_token``).

        Derived from the step's promise id and deadline: a step re-executed after a
        crash sends the same token and gets back what the first attempt started.
        """
        digest = hashlib.sha256(f"{self.id}@{self.deadline_ms}".encode()).hexdigest()
        return f"dara-{digest[:48]}"


@dataclass(frozen=True)
class StepRetry:
    """How often, and how patiently, transient step failures are retried."""

    retries: int = 3
    delay: float = 2.0
    #: Longest wait between tries while the workspace is full (capacity errors).
    capacity_max_delay: float = 15.0

    def delays(self) -> typing.Iterator[float]:
        return (self.delay * 2**attempt for attempt in range(self.retries))

    def capacity_delays(self) -> typing.Iterator[float]:
        """Waits while the workspace has no room: doubling, capped, for as long as it takes."""
        delay = self.delay
        while True:
            yield delay
            delay = min(delay * 2, self.capacity_max_delay)


@functools.cache
def _hints(step: typing.Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(step)


def injected_parameters(step: typing.Callable[..., Any], ctx: ResonateContext) -> dict[str, type]:
    """Which of ``step``'s parameters DARA fills in, by name -> type."""
    injected: dict[str, type] = {}
    for name, hint in _hints(step).items():
        if name == "return" or not isinstance(hint, type):
            continue
        if hint is StepInfo or _has_dependency(ctx, hint):
            injected[name] = hint
    return injected


def _has_dependency(ctx: ResonateContext, kind: type) -> bool:
    try:
        ctx.get_dependency(kind)
    except KeyError:
        return False
    return True


def return_type(step: typing.Callable[..., Any]) -> Any:
    return _hints(step).get("return", Any)


def durable_step(
    step: typing.Callable[..., Any], injected: dict[str, type]
) -> typing.Callable[..., typing.Awaitable[dict[str, Any]]]:
    """Wrap ``step`` as the ``async def (ctx, ...)`` function the SDK executes."""
    name = step.__name__
    signature = inspect.signature(step)
    hints = _hints(step)
    public = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name not in injected
    ]
    public_signature = signature.replace(parameters=public)

    async def call(ctx: ResonateContext, /, *args: Any, **kwargs: Any) -> dict[str, Any]:
        meta = RunMeta.of(kwargs.pop(RUN_META, None))
        info = StepInfo(
            id=ctx.info.id,
            run_id=ctx.info.origin_id,
            deadline_ms=ctx.info.timeout_at,
            incarnation=meta.incarnation,
            started_by=meta.started_by,
        )
        arguments = dict(public_signature.bind(*args, **kwargs).arguments)
        for param, kind in injected.items():
            arguments[param] = info if kind is StepInfo else ctx.get_dependency(kind)
        retry = _retry_policy(ctx)
        result = await _call_with_retries(step, arguments, retry, deadline_ms=info.deadline_ms)
        return {"step": name, "result": result}

    call.__name__ = call.__qualname__ = name
    call.__doc__ = step.__doc__
    call.__signature__ = public_signature.replace(  # type: ignore[attr-defined]
        parameters=sdk_parameters(public), return_annotation=Any
    )
    return call


def _retry_policy(ctx: ResonateContext) -> StepRetry:
    try:
        return ctx.get_dependency(StepRetry)
    except KeyError:
        return StepRetry()


async def _call_with_retries(
    step: typing.Callable[..., Any],
    arguments: dict[str, Any],
    retry: StepRetry,
    *,
    deadline_ms: int | None = None,
    clock: typing.Callable[[], float] = time.time,
) -> Any:
    """Call ``step``; retry transient failures ``retry.retries`` times, and capacity
    failures (a full run queue, throttling) for as long as the step's deadline allows."""
    delays, waits = retry.delays(), retry.capacity_delays()
    attempt = 1
    while True:
        try:
            if inspect.iscoroutinefunction(step):
                return await step(**arguments)
            return await asyncio.to_thread(step, **arguments)
        except StepError:
            raise
        except Exception as exc:
            if is_capacity(exc):
                delay: float | None = next(waits)
                if deadline_ms is not None and (clock() + delay) * 1000 >= deadline_ms:
                    delay = None  # no room before the deadline: fail now, saying why
            else:
                delay = next(delays, None) if is_transient(exc) else None
            if delay is None:
                raise StepError.wrap(step.__name__, exc, attempts=attempt) from exc
            await asyncio.sleep(delay)
            attempt += 1
