"""Generator pipelines on the asyncio-only Resonate SDK.

resonate-sdk 0.8 executes ``async def`` functions; DARA pipelines are generators that
``yield`` each durable operation, so they read top to bottom and cannot accidentally
``await`` something non-durable. :func:`drive` adapts one to the other: it awaits
whatever the generator yields and sends the result back in (or throws the error in,
where the pipeline may catch it).

Only :class:`Exception` is caught while awaiting. The SDK suspends a workflow by
raising ``Suspended`` (a ``BaseException``) through it; swallowing that would turn a
durable wait into a crash.

The SDK reads the registered function's signature and type hints to decode arguments
and results, so the driver carries the generator's parameters (hints resolved) and
its ``Generator[..., ..., R]`` return type ``R``. Without that, a typed argument would
silently arrive as a ``dict``.

Each execution of a run -- the first, and one per resume, since the generator replays
from its first line -- is reported to the runtime's telemetry (app.durable.telemetry),
with how the run ended when it did. Watchers are driven here too, but are not runs.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pydantic
from resonate.context import Context as ResonateContext

from app.durable.context import Context
from app.durable.errors import TIMED_OUT
from app.durable.run_meta import RUN_META, RunMeta, sdk_parameters
from app.durable.telemetry import Execution, telemetry_of

type PipelineFunction = typing.Callable[..., typing.Generator[Any, Any, Any]]
type DurableFunction = typing.Callable[..., typing.Awaitable[Any]]


class YieldError(TypeError):
    """A pipeline yielded something that is not a durable operation."""


class _ServerOnly:
    """Marks a pipeline parameter only DARA itself may set: ``Annotated[str, SERVER_ONLY]``.

    ``POST /runs`` refuses it, so a caller cannot hand a pipeline what the service
    computes for it (a confined path, a checked job definition).
    """

    def __repr__(self) -> str:
        return "SERVER_ONLY"


SERVER_ONLY = _ServerOnly()


def drive(gen_fn: PipelineFunction, *, wait_timeout: timedelta | None = None) -> DurableFunction:
    """Adapt a generator pipeline into the ``async def (ctx, ...)`` the SDK runs.

    ``wait_timeout`` is the default deadline of the pipeline's ``ctx.promise()`` calls.
    """
    if not inspect.isgeneratorfunction(gen_fn):
        msg = f"{gen_fn.__name__} must be a generator function (use `yield ctx.run(...)`)"
        raise TypeError(msg)

    async def durable(ctx: ResonateContext, /, *args: Any, **kwargs: Any) -> Any:
        meta = RunMeta.of(kwargs.pop(RUN_META, None))
        context = Context(ctx, wait_timeout=wait_timeout, meta=meta)
        gen = gen_fn(context, *args, **kwargs)
        info = ctx.info
        if info.id != info.origin_id:  # a watcher, detached from its run: not a run of its own
            return await _run(gen, context)
        execution = Execution(info.id, info.func_name, meta)
        with telemetry_of(ctx).execution(execution):
            return await _run(gen, context, execution)

    signature = user_signature(gen_fn)
    durable.__name__ = durable.__qualname__ = gen_fn.__name__
    durable.__doc__ = gen_fn.__doc__
    durable.__module__ = gen_fn.__module__
    # The run's facts (app.durable.run_meta) land in the root promise through ``_dara``.
    durable.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=sdk_parameters(list(signature.parameters.values()))
    )
    return durable


async def _run(gen: typing.Generator[Any, Any, Any], context: Context, execution: Execution | None = None) -> Any:
    """Await what ``gen`` yields and send it back in, to its end; say how it ended in ``execution``."""
    value: Any = None
    error: Exception | None = None
    while True:
        try:
            yielded = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            if execution is not None:
                execution.status = "done"
            return stop.value
        except Exception as failure:
            if execution is not None:
                execution.status, execution.error = _failure_status(failure), failure
            # The SDK will not settle a workflow while a promise it created is still
            # pending, so a pipeline failing before its callback arrived would hang
            # until the callback's deadline. Settle those promises first.
            await context.abandon_waits(failure)
            raise
        value, error = None, None
        if not inspect.isawaitable(yielded):
            # A generator object has __name__; typing's Generator does not declare it.
            error = YieldError(
                f"{gen.__name__} yielded {yielded!r}; a pipeline yields only "  # type: ignore[attr-defined]
                "ctx.run(...), ctx.promise(), ctx.sleep(...) or their .id()"
            )
            continue
        try:
            value = await yielded
        except Exception as exc:  # noqa: BLE001 -- handed to the pipeline to catch
            error = exc


def _failure_status(failure: Exception) -> str:
    """The status ``GET /runs/{id}`` will show for a run that raised ``failure`` (app.services.run_status)."""
    return "timed_out" if str(failure).startswith(TIMED_OUT) else "failed"


def user_signature(gen_fn: PipelineFunction, *, include_extras: bool = False) -> inspect.Signature:
    """The pipeline's own parameters (``ctx`` removed), hints resolved, return = ``R``.

    ``include_extras`` keeps ``Annotated`` metadata (a ``Field(pattern=...)``) for the
    params model; the SDK gets the plain types.
    """
    hints = typing.get_type_hints(gen_fn, include_extras=include_extras)
    params = list(inspect.signature(gen_fn).parameters.values())[1:]
    return inspect.Signature(
        [p.replace(annotation=hints.get(p.name, Any)) for p in params],
        return_annotation=_generator_return(hints.get("return", Any)),
    )


def _generator_return(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (collections.abc.Generator, typing.Generator):
        args = typing.get_args(hint)
        return args[2] if len(args) == 3 else Any
    return Any


@dataclass
class Pipeline:
    """A declared pipeline: its name, the driver the SDK runs, and its parameters."""

    name: str
    function: PipelineFunction
    #: Deadline of a run of this pipeline (default: DARA_RUN_DEADLINE).
    deadline: timedelta | None = None
    #: Default deadline of its waits (default: DARA_CALLBACK_TIMEOUT).
    wait_timeout: timedelta | None = None
    #: Started only by DARA's own routes, never by ``POST /runs``: this says which route.
    server_only: str | None = None
    durable: DurableFunction = field(init=False)
    params: type[pydantic.BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        self.durable = drive(self.function, wait_timeout=self.wait_timeout)
        self.params = params_model(self.name, user_signature(self.function, include_extras=True))

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.function.__doc__ or "").split("\n\n")[0]

    @property
    def server_only_params(self) -> list[str]:
        """Parameters annotated ``SERVER_ONLY``: DARA sets them, callers may not."""
        hints = typing.get_type_hints(self.function, include_extras=True)
        return [
            name
            for name, hint in hints.items()
            if typing.get_origin(hint) is typing.Annotated and SERVER_ONLY in hint.__metadata__
        ]

    def caller_refusal(self, params: dict[str, Any]) -> str | None:
        """Why a caller may not start this pipeline with ``params`` itself, or None."""
        if self.server_only is not None:
            return f"pipeline {self.name!r} is started only by DARA itself: use {self.server_only}"
        named = [name for name in self.server_only_params if name in params]
        if named:
            return (
                f"{', '.join(map(repr, named))} of pipeline {self.name!r} "
                f"{'is' if len(named) == 1 else 'are'} set only by DARA itself; leave "
                f"{'it' if len(named) == 1 else 'them'} out"
            )
        return None

    def validate(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check ``params`` against the signature; raises ``pydantic.ValidationError``.

        ``context`` carries what app.durable.params types check against.
        """
        model = self.params.model_validate(params, context=context)
        return {name: getattr(model, name) for name in type(model).model_fields}


def params_model(name: str, signature: inspect.Signature) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {
        p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default)
        for p in signature.parameters.values()
    }
    return pydantic.create_model(f"{name}_params", __config__=pydantic.ConfigDict(extra="forbid"), **fields)


@typing.overload
def pipeline(fn: PipelineFunction, /) -> Pipeline: ...
@typing.overload
def pipeline(
    *,
    name: str | None = None,
    deadline: timedelta | None = None,
    wait_timeout: timedelta | None = None,
    server_only: str | None = None,
) -> typing.Callable[[PipelineFunction], Pipeline]: ...
def pipeline(
    fn: PipelineFunction | None = None,
    /,
    *,
    name: str | None = None,
    deadline: timedelta | None = None,
    wait_timeout: timedelta | None = None,
    server_only: str | None = None,
) -> Any:
    """Declare a pipeline: the decorated name is its :class:`Pipeline`.

    Declaring registers nothing: the service runs the pipelines it is given, by default
    those listed in ``pipelines.PIPELINES`` (app.wiring).

    ``deadline`` bounds each run of it and ``wait_timeout`` each of its waits; both
    default to the service's settings (DARA_RUN_DEADLINE, DARA_CALLBACK_TIMEOUT).
    ``server_only`` names the route that starts it, for a pipeline whose parameters
    only DARA may compute: ``POST /runs`` then refuses it and points there.
    """

    def declare(gen_fn: PipelineFunction) -> Pipeline:
        return Pipeline(
            name or gen_fn.__name__, gen_fn, deadline=deadline, wait_timeout=wait_timeout, server_only=server_only
        )

    return declare(fn) if fn is not None else declare


def catalog(*pipelines: Pipeline) -> dict[str, Pipeline]:
    """``pipelines`` by name, as the service looks them up; refuses two of one name."""
    named: dict[str, Pipeline] = {}
    for declared in pipelines:
        existing = named.get(declared.name)
        if existing is not None and existing is not declared:
            msg = f"two pipelines are named {declared.name!r}: rename one (pipeline(name=...))"
            raise ValueError(msg)
        named[declared.name] = declared
    return named
