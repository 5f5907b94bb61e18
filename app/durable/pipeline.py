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

type PipelineFunction = typing.Callable[..., typing.Generator[Any, Any, Any]]
type DurableFunction = typing.Callable[..., typing.Awaitable[Any]]


class YieldError(TypeError):
    """A pipeline yielded something that is not a durable operation."""


def drive(gen_fn: PipelineFunction, *, wait_timeout: timedelta | None = None) -> DurableFunction:
    """Adapt a generator pipeline into the ``async def (ctx, ...)`` the SDK runs.

    ``wait_timeout`` is the default deadline of the pipeline's ``ctx.promise()`` calls.
    """
    if not inspect.isgeneratorfunction(gen_fn):
        msg = f"{gen_fn.__name__} must be a generator function (use `yield ctx.run(...)`)"
        raise TypeError(msg)

    async def durable(ctx: ResonateContext, /, *args: Any, **kwargs: Any) -> Any:
        context = Context(ctx, wait_timeout=wait_timeout)
        gen = gen_fn(context, *args, **kwargs)
        value: Any = None
        error: Exception | None = None
        while True:
            try:
                yielded = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                return stop.value
            except Exception as failure:
                # The SDK will not settle a workflow while a promise it created is still
                # pending, so a pipeline failing before its callback arrived would hang
                # until the callback's deadline. Settle those promises first.
                await context.abandon_waits(failure)
                raise
            value, error = None, None
            if not inspect.isawaitable(yielded):
                error = YieldError(
                    f"{gen_fn.__name__} yielded {yielded!r}; a pipeline yields only "
                    "ctx.run(...), ctx.promise(), ctx.sleep(...) or their .id()"
                )
                continue
            try:
                value = await yielded
            except Exception as exc:  # noqa: BLE001 -- handed to the pipeline to catch
                error = exc

    signature = user_signature(gen_fn)
    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_ONLY)
    durable.__name__ = durable.__qualname__ = gen_fn.__name__
    durable.__doc__ = gen_fn.__doc__
    durable.__module__ = gen_fn.__module__
    durable.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[ctx_param, *signature.parameters.values()]
    )
    return durable


def user_signature(gen_fn: PipelineFunction) -> inspect.Signature:
    """The pipeline's own parameters (``ctx`` removed), hints resolved, return = ``R``."""
    hints = typing.get_type_hints(gen_fn)
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
    """A registered pipeline: its name, the driver the SDK runs, and its parameters."""

    name: str
    function: PipelineFunction
    #: Deadline of a run of this pipeline (default: DARA_RUN_DEADLINE).
    deadline: timedelta | None = None
    #: Default deadline of its waits (default: DARA_CALLBACK_TIMEOUT).
    wait_timeout: timedelta | None = None
    durable: DurableFunction = field(init=False)
    params: type[pydantic.BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        self.durable = drive(self.function, wait_timeout=self.wait_timeout)
        self.params = params_model(self.name, user_signature(self.function))

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.function.__doc__ or "").split("\n\n")[0]

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check ``params`` against the signature; raises ``pydantic.ValidationError``."""
        model = self.params.model_validate(params)
        return {name: getattr(model, name) for name in type(model).model_fields}


def params_model(name: str, signature: inspect.Signature) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {
        p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default)
        for p in signature.parameters.values()
    }
    return pydantic.create_model(
        f"{name}_params", __config__=pydantic.ConfigDict(extra="forbid"), **fields
    )


#: Every pipeline defined with :func:`pipeline`, by name.
REGISTRY: dict[str, Pipeline] = {}


@typing.overload
def pipeline(fn: PipelineFunction, /) -> PipelineFunction: ...
@typing.overload
def pipeline(
    *,
    name: str | None = None,
    deadline: timedelta | None = None,
    wait_timeout: timedelta | None = None,
) -> typing.Callable[[PipelineFunction], PipelineFunction]: ...
def pipeline(
    fn: PipelineFunction | None = None,
    /,
    *,
    name: str | None = None,
    deadline: timedelta | None = None,
    wait_timeout: timedelta | None = None,
) -> Any:
    """Declare a pipeline. Defining it is registering it: the service finds it by name.

    ``deadline`` bounds each run of it and ``wait_timeout`` each of its waits; both
    default to the service's settings (DARA_RUN_DEADLINE, DARA_CALLBACK_TIMEOUT).
    """

    def register(gen_fn: PipelineFunction) -> PipelineFunction:
        key = name or gen_fn.__name__
        existing = REGISTRY.get(key)
        if existing is not None and existing.function.__qualname__ != gen_fn.__qualname__:
            msg = f"two pipelines are named {key!r}: rename one (pipeline(name=...))"
            raise ValueError(msg)
        REGISTRY[key] = Pipeline(key, gen_fn, deadline=deadline, wait_timeout=wait_timeout)
        return gen_fn

    return register(fn) if fn is not None else register
