"""Running a plain, typed step function as a durable ``ctx.run`` child.

A step is an ordinary function (``def run_job(w: WorkspaceClient, job: str) -> JobRun``):
no Resonate context, no retry loop, no threads. This module adapts it for the SDK:

* **Injection.** A parameter annotated with a type the service provided for steps
  (:class:`StepDependencies`, filled in explicitly by app.wiring) is filled in here, as
  is one annotated :class:`StepInfo` (or a protocol registered to receive it); the
  pipeline passes only the rest. Like FastAPI dependencies, by type -- but only the
  types listed there, so nothing else registered with Resonate can make a parameter
  vanish from a step's signature.
* **Retries and threads.** The step is called, in a worker thread if it is synchronous,
  and retried as it declares (steps.retryable) by the runner's one policy
  (app.durable.retries). While it waits for room in the workspace, each refusal is
  noted on its promise (app.durable.capacity_waits), so the run reads as queued. Once
  the step's run has ended, it is not tried again; a step that declares how to stop
  what it started (steps.undone) has it stopped if its run ended as it ran
  (app.durable.run_ended).
* **Telemetry.** Each execution of a step, and each retry, is reported to the
  runtime's telemetry (app.durable.telemetry): metrics and, when configured, a span.
* **Names.** The settled value is ``{"step": name, "result": value}``, so the step's
  name is visible wherever its promise is read: ``GET /runs/{id}``, ``resonate promises
  get``, ``resonate tree``. A failure is raised as :class:`StepError`, whose message
  starts with the step's name.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Self

from resonate.context import Context as ResonateContext
from resonate.resonate import Resonate

from app.durable import run_ended
from app.durable.capacity_waits import CapacityLog
from app.durable.errors import EndedWhileRunning, NotTriedAgain
from app.durable.retries import RetryPolicy, call_with_retries
from app.durable.run_meta import ANONYMOUS, RUN_META, RunMeta, sdk_parameters
from app.durable.telemetry import telemetry_of


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


class StepDependencies:
    """What steps are given, by the type they declare: each type provided explicitly.

    One instance is registered with Resonate (app.wiring); a step parameter annotated
    with a type provided here is filled in with its value, one annotated
    :class:`StepInfo` -- or a protocol given :meth:`step_info_as` -- with the step's own
    info. A protocol (steps.injected) is the usual key: the step names what it needs, the
    service decides what provides it.
    """

    def __init__(self) -> None:
        self._values: dict[type, Any] = {}
        self._step_info: set[type] = {StepInfo}

    def provide(self, kind: type, value: object) -> Self:
        """Give ``value`` to every step parameter annotated ``kind`` (checked here, at wiring,
        as far as ``isinstance`` can: a type checker cannot take a protocol for ``type[T]``)."""
        if _checkable(kind) and not isinstance(value, kind):
            msg = f"{type(value).__qualname__} does not provide {kind.__qualname__}: it lacks what steps ask of it"
            raise TypeError(msg)
        self._values[kind] = value
        return self

    def step_info_as(self, kind: type) -> Self:
        """Give a step its own :class:`StepInfo` for a parameter annotated ``kind``."""
        if _checkable(kind) and not isinstance(StepInfo("x:1", "x", 0), kind):
            msg = f"StepInfo does not provide {kind.__qualname__}"
            raise TypeError(msg)
        self._step_info.add(kind)
        return self

    def provides(self, kind: type) -> bool:
        return kind in self._values or kind in self._step_info

    def gives_step_info(self, kind: type) -> bool:
        return kind in self._step_info

    def value(self, kind: type, info: StepInfo) -> Any:
        return info if kind in self._step_info else self._values[kind]


def _checkable(kind: type) -> bool:
    """Whether ``isinstance(value, kind)`` answers: a class, or a runtime-checkable protocol."""
    if getattr(kind, "_is_protocol", False):
        return bool(getattr(kind, "_is_runtime_protocol", False))
    return True


def step_dependencies(ctx: ResonateContext) -> StepDependencies:
    """What the wiring provided; without it (a bare Resonate), only :class:`StepInfo`."""
    try:
        return ctx.get_dependency(StepDependencies)
    except KeyError:
        return StepDependencies()


class StepDoubles:
    """Steps stood in for by others, by the step they stand in for: how a unit test runs a
    pipeline on fake steps, as Temporal's tests register mocked activities.

    Registered with Resonate by a test only. A double runs under the name of the step it
    stands in for, and its result is decoded as that step's, so the run reads as with
    the real step.
    """

    def __init__(self, doubles: typing.Mapping[Any, typing.Callable[..., Any]]) -> None:
        self._doubles = dict(doubles)

    def get(self, step: typing.Callable[..., Any]) -> typing.Callable[..., Any] | None:
        return self._doubles.get(step)


@functools.cache
def _hints(step: typing.Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(step)


def injected_parameters(step: typing.Callable[..., Any], ctx: ResonateContext) -> dict[str, type]:
    """Which of ``step``'s parameters DARA fills in, by name -> type."""
    provided = step_dependencies(ctx)
    return {
        name: hint
        for name, hint in _hints(step).items()
        if name != "return" and isinstance(hint, type) and provided.provides(hint)
    }


def return_type(step: typing.Callable[..., Any]) -> Any:
    return _hints(step).get("return", Any)


def durable_step(
    step: typing.Callable[..., Any], injected: dict[str, type], name: str | None = None
) -> typing.Callable[..., typing.Awaitable[dict[str, Any]]]:
    """Wrap ``step`` as the ``async def (ctx, ...)`` function the SDK executes, named
    ``name`` (default: the step's own)."""
    name = name or step.__name__
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
        provided = step_dependencies(ctx)
        for param, kind in injected.items():
            arguments[param] = provided.value(kind, info)
        telemetry = telemetry_of(ctx)
        policy = _retry_policy(ctx)
        resonate = _resonate(ctx)
        waits = ended = None
        if resonate is not None:
            waits = CapacityLog(resonate, info.id, name, info.deadline_ms, policy.clock)
            ended = functools.partial(run_ended.how_ended, resonate, info.run_id)
        with telemetry.step(info.run_id, info.id, name):
            try:
                result = await call_with_retries(
                    step,
                    arguments,
                    policy,
                    name=name,
                    deadline_ms=info.deadline_ms,
                    on_retry=lambda reason: telemetry.step_retried(name, reason),
                    on_capacity=waits.refused if waits is not None else None,
                    run_ended=ended,
                )
                if resonate is not None:  # a step that started work for a run that ended stops it
                    await run_ended.undo_if_ended(resonate, info.run_id, name, step, result, arguments)
            except (NotTriedAgain, EndedWhileRunning) as exc:
                if resonate is not None:
                    await run_ended.reject_step(resonate, info.id, exc)
                raise
            finally:
                if waits is not None:
                    await waits.over()
        return {"step": name, "result": result}

    call.__name__ = call.__qualname__ = name
    call.__doc__ = step.__doc__
    call.__signature__ = public_signature.replace(  # type: ignore[attr-defined]
        parameters=sdk_parameters(public), return_annotation=Any
    )
    return call


def _resonate(ctx: ResonateContext) -> Resonate | None:
    """The client the step notes its waits for room with and reads its run by, so any
    worker shows the run as queued and a wait stops with its run; None on a bare
    Resonate (a unit test's), which registered no client with itself."""
    try:
        return ctx.get_dependency(Resonate)
    except KeyError:
        return None


def _retry_policy(ctx: ResonateContext) -> RetryPolicy:
    try:
        return ctx.get_dependency(RetryPolicy)
    except KeyError:
        return RetryPolicy()
