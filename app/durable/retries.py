"""How a failed step is tried again: the step runner's one retry policy.

*What* is worth trying again is each step's own declaration, beside it
(``@retried(...)``, steps.retryable). *How* is decided here, the same for every step:

* a **transient** failure is tried again ``retries`` times, after doubling delays;
* a **capacity** failure (a full workspace) is waited out, the delay doubling up to
  ``capacity_max_delay``, for as long as the step's deadline allows; then the step
  fails, saying why, rather than sleep past the deadline;
* anything else fails the step at once, as does a :class:`StepError` (already final);
* before each new try, the step stops if the run it works for has ended
  (app.durable.run_ended): a try that got in would start work nobody waits for.

The SDK's own retry policy cannot tell these apart -- it never sees the exception --
so it is off (:func:`sdk_retry_policy`) for every function DARA registers and every
step it runs, and this is the only retry loop. The clock and the sleep are part of
the policy, so a test advances time instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from resonate.retry import Never

from app.durable.errors import NotTriedAgain, StepError

#: The attribute a step's declaration is found under (steps.retryable.retried sets it).
DECLARATION = "retryable"


class Retryable(Protocol):
    """A step's declaration: how a failure of it is retried, if at all (steps.retryable)."""

    def kind(self, exc: BaseException) -> Literal["capacity", "transient"] | None: ...


class _Never:
    def kind(self, exc: BaseException) -> None:
        return None


#: For a step that declares nothing when no default was configured: fail at once.
NO_RETRIES: Retryable = _Never()


def sdk_retry_policy() -> Never:
    """The SDK's own retry policy for DARA's functions and steps: none (see the module)."""
    return Never()


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a step's retryable failures are tried again."""

    retries: int = 3
    #: Seconds before the first retry; it doubles.
    delay: float = 2.0
    #: Longest wait between tries while the workspace is full (capacity failures).
    capacity_max_delay: float = 15.0
    #: How a step that declares nothing is retried (app.wiring: as a Databricks call).
    default: Retryable = NO_RETRIES
    #: Seconds since the epoch, as the step's deadline is measured.
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def declared(self, step: Callable[..., Any]) -> Retryable:
        """What ``step`` declared, or the default."""
        declaration: Retryable | None = getattr(step, DECLARATION, None)
        return declaration if declaration is not None else self.default

    def delays(self) -> Iterator[float]:
        return (self.delay * 2**attempt for attempt in range(self.retries))

    def capacity_delays(self) -> Iterator[float]:
        """Waits while the workspace has no room: doubling, capped, for as long as it takes."""
        delay = self.delay
        while True:
            yield delay
            delay = min(delay * 2, self.capacity_max_delay)


async def call_with_retries(
    step: Callable[..., Any],
    arguments: dict[str, Any],
    policy: RetryPolicy,
    *,
    name: str | None = None,
    deadline_ms: int | None = None,
    on_retry: Callable[[str], None] | None = None,
    on_capacity: Callable[[BaseException, float], Awaitable[None]] | None = None,
    run_ended: Callable[[], Awaitable[str | None]] | None = None,
) -> Any:
    """Call ``step`` with ``arguments`` (a synchronous one in a worker thread), retrying as
    it declares; ``on_retry`` hears of each retry and why: ``transient`` or ``capacity``,
    and ``on_capacity`` of each capacity refusal about to be waited out, with the delay
    (so the wait can be shown as queued: app.durable.capacity_waits). Before each new try,
    ``run_ended`` says whether the step's run is over (why, or None): then the step is
    not tried again but fails with :class:`NotTriedAgain`.
    A failure for good is raised as :class:`StepError`, named ``name`` (default: the step's)."""
    retryable = policy.declared(step)
    delays, waits = policy.delays(), policy.capacity_delays()
    attempt = 1
    while True:
        try:
            if inspect.iscoroutinefunction(step):
                return await step(**arguments)
            # The SDK runs steps on the event loop's thread: a blocking databricks-sdk call
            # there would stall the heartbeat and lose the lease.
            return await asyncio.to_thread(step, **arguments)
        except StepError:
            raise
        except Exception as exc:
            kind = retryable.kind(exc)
            delay: float | None = None
            if kind == "capacity":
                delay = next(waits)
                if deadline_ms is not None and (policy.clock() + delay) * 1000 >= deadline_ms:
                    delay = None  # no room before the deadline: fail now, saying why
            elif kind == "transient":
                delay = next(delays, None)
            if delay is None:
                raise StepError.wrap(name or step.__name__, exc, attempts=attempt) from exc
            if on_retry is not None:
                on_retry(kind or "transient")
            if kind == "capacity" and on_capacity is not None:
                await on_capacity(exc, delay)
            await policy.sleep(delay)
            if run_ended is not None and (ended := await run_ended()) is not None:
                raise NotTriedAgain(name or step.__name__, ended, capacity=kind == "capacity") from exc
            attempt += 1
