"""The ``ctx`` a pipeline receives.

A deliberately small surface over :class:`resonate.Context`: run a step, create a
promise for something outside to settle, sleep. Each returns an awaitable the
pipeline ``yield``\\ s; the driver awaits it and sends the result back in.

A step's call is also iterable, so ``x = yield from ctx.run(step, ...)`` hands the
driver the same object as ``yield`` does while the type checker types ``x`` as the
step's result: a bare ``yield`` expression is always ``Any`` to it.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
from resonate.codec import dec_hook
from resonate.context import Context as ResonateContext
from resonate.context import ResonateFuture
from resonate.error import ApplicationError
from resonate.resonate import Resonate
from resonate.types import PromiseRecord

from app.durable.errors import WaitTimedOut
from app.durable.resonate_format import future_id, rejection
from app.durable.retries import sdk_retry_policy
from app.durable.run_meta import RUN_META, RunMeta
from app.durable.step import StepDoubles, durable_step, injected_parameters, return_type, step_dependencies
from app.durable.telemetry import settled_record, telemetry_of

#: Where a watchdog enforces deadlines: how long after its deadline the promise's own
#: timeout falls, the backstop if no worker is alive to run the watchdog.
EXPIRY_MARGIN = timedelta(minutes=1)


@dataclass(frozen=True)
class Watchers:
    """The durable functions that guard a pipeline's waits, by the name each is registered
    under. This layer says what they are for; the wiring (app.wiring) says which functions
    they are and registers them under these names."""

    #: Rejects a wait at its deadline on a backend that does not: ``(promise_id, seconds)``.
    expire: str
    #: Watches a Databricks run for a wait: ``(run, promise_id, check, settle)``.
    watch: str


@dataclass(frozen=True)
class WaitDefaults:
    """How ``ctx.promise()`` waits: its default deadline, and who enforces deadlines."""

    promise_timeout: timedelta = timedelta(hours=12)
    #: True when the backend times a wait out at its deadline by itself. DARA's
    #: in-process server does, and so does the Resonate server v0.9.8: every second
    #: it times out every pending promise past its timeout, with or without a target.
    #: Otherwise a detached watchdog per wait does it.
    backend_times_out: bool = False


@functools.cache
def _durable_step(step: typing.Callable[..., Any], injected: tuple[tuple[str, type], ...], name: str) -> Any:
    """One SDK-facing wrapper per step, built once: ``ctx.run`` is hot on every replay."""
    return durable_step(step, dict(injected), name)


class StepCall[T]:
    """A step started by :meth:`Context.run`: await it for the step's typed result."""

    def __init__(self, future: ResonateFuture[Any], result_type: Any) -> None:
        self._future = future
        self._type = result_type

    async def id(self) -> str:
        """The step's promise id (``<run>:<n>``)."""
        return await self._future.id()

    def __await__(self) -> typing.Generator[Any, None, T]:
        return self._result().__await__()

    def __iter__(self) -> typing.Generator[StepCall[T], Any, T]:
        """``yield from`` this: the driver is handed this call, as by ``yield``, and the
        result it sends back becomes the expression's value, typed as the step returns."""
        return (yield self)

    async def _result(self) -> T:
        settled = await self._future
        result = settled["result"]
        if self._type is Any or self._type is None or self._type is type(None):
            return result
        return msgspec.convert(result, self._type, dec_hook=dec_hook)


class Wait:
    """A wait created by :meth:`Context.promise`: await it for the value it is settled with.

    A wait that reached its deadline raises :class:`WaitTimedOut`, whichever of the
    backend or the watchdog timed it out.
    """

    def __init__(self, future: ResonateFuture[Any], ctx: ResonateContext) -> None:
        self._future = future
        self._ctx = ctx

    async def id(self) -> str:
        """The promise id a notebook resolves (``<run>:<n>``)."""
        return await self._future.id()

    def __await__(self) -> typing.Generator[Any, None, Any]:
        return self._value().__await__()

    async def _value(self) -> Any:
        try:
            value = await self._future
        except Exception as exc:
            # A backend timeout settles the promise with no value, which the SDK
            # reports as "unknown error: null": name it. Only failures pay this read.
            record = await self._ctx.get_dependency(Resonate).promises.get(future_id(self._future))
            self._passed(record)
            if isinstance(exc, ApplicationError) and record.state == "rejected_timedout":
                raise WaitTimedOut(record.id, record.timeout_at) from None
            raise
        self._passed(settled_record(self._ctx, future_id(self._future)))
        return value

    def _passed(self, record: PromiseRecord | None) -> None:
        """Tell the telemetry the pipeline got past this wait (not when it suspended on it)."""
        if record is not None and record.state != "pending":
            info = self._ctx.info
            telemetry_of(self._ctx).wait_passed(info.origin_id, info.func_name, record)


class Context:
    """Durable operations for a pipeline body."""

    def __init__(self, ctx: ResonateContext, *, meta: RunMeta, wait_timeout: timedelta | None = None) -> None:
        self._ctx = ctx
        self._wait_timeout = wait_timeout
        self._waits: list[str] = []
        #: What DARA recorded about this run: who started it, and its incarnation.
        self.meta = meta

    @property
    def run_id(self) -> str:
        """The id the run was started with."""
        return self._ctx.info.origin_id

    @typing.overload
    def run[T](
        self, step: typing.Callable[..., typing.Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any
    ) -> StepCall[T]: ...
    @typing.overload
    def run[T](self, step: typing.Callable[..., T], /, *args: Any, **kwargs: Any) -> StepCall[T]: ...
    def run(self, step: typing.Callable[..., Any], /, *args: Any, **kwargs: Any) -> StepCall[Any]:
        """Run ``step`` once, durably: a replay returns its recorded result.

        Its result is what the step returns; an ``async def`` step's, what it returns
        once awaited (the first overload, so the type checker does not see a coroutine).
        """
        runs = self._double(step) or step
        injected = injected_parameters(runs, self._ctx)
        if any(map(step_dependencies(self._ctx).gives_step_info, injected.values())):
            # In memory only: the SDK records a local step's result, not its arguments.
            kwargs[RUN_META] = self.meta
        future = self._ctx.options(retry_policy=sdk_retry_policy()).run(
            _durable_step(runs, tuple(injected.items()), step.__name__), *args, **kwargs
        )
        return StepCall(future, return_type(step))

    def promise(self, timeout: timedelta | None = None) -> Wait:
        """A promise settled from outside (a notebook's ``POST /resolve``).

        Its deadline is ``timeout`` (default: the pipeline's, else DARA_CALLBACK_TIMEOUT);
        past it, the wait raises :class:`WaitTimedOut`.
        """
        defaults = self._defaults()
        timeout = timeout or self._wait_timeout or defaults.promise_timeout
        if defaults.backend_times_out:
            future = self._ctx.promise(timeout)
        else:
            future = self._ctx.promise(timeout + EXPIRY_MARGIN)
            # The id is minted synchronously; ResonateFuture.id() would wait for the create.
            self._ctx.detached(self._watchers().expire, future_id(future), timeout.total_seconds())
        self._waits.append(future_id(future))
        return Wait(future, self._ctx)

    def watch(self, run: Any, promise_id: str, *, settle: bool = False) -> ResonateFuture[str]:
        """Fail ``promise_id`` if the Databricks ``run`` ends without settling it.

        With ``settle=True`` (jobs whose notebooks do not call back) the run's end
        settles the promise instead: resolved with per-task results on success.

        ``promise_id`` must be a wait of this run: the run was started with its id, so it
        was created first (pipelines.job_callback does all three in that order).
        """
        if promise_id not in self._waits:
            msg = (
                f"ctx.watch: {promise_id!r} is not a wait of this run; create the wait with "
                "ctx.promise(), start the run with its id, then watch the run"
            )
            raise ValueError(msg)
        return self.detach(self._watchers().watch, run, promise_id, 0, settle)

    def detach(self, function: str, /, *args: Any) -> ResonateFuture[str]:
        """Start a registered durable function on its own; it outlives this pipeline."""
        return self._ctx.detached(function, *args)

    def sleep(self, duration: timedelta) -> ResonateFuture[None]:
        """Wait ``duration`` durably; no process holds the wait."""
        return self._ctx.sleep(duration)

    async def abandon_waits(self, failure: Exception) -> None:
        """Reject this pipeline's still-pending promises: it failed, nobody will wait."""
        if not self._waits:
            return
        promises = self._ctx.get_dependency(Resonate).promises
        reason = rejection(f"abandoned: the pipeline failed first ({failure})")
        for promise_id in self._waits:
            if (await promises.get(promise_id)).state == "pending":
                await promises.reject(promise_id, reason)

    def _defaults(self) -> WaitDefaults:
        try:
            return self._ctx.get_dependency(WaitDefaults)
        except KeyError:
            return WaitDefaults()

    def _watchers(self) -> Watchers:
        try:
            return self._ctx.get_dependency(Watchers)
        except KeyError:
            msg = "no watchers are wired for waits: register Watchers with Resonate (app.wiring)"
            raise LookupError(msg) from None

    def _double(self, step: typing.Callable[..., Any]) -> typing.Callable[..., Any] | None:
        try:
            doubles = self._ctx.get_dependency(StepDoubles)
        except KeyError:
            return None  # as in production: no test registered any
        return doubles.get(step)
