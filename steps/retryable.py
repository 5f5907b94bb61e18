"""Which failures of a step are worth trying again, declared beside each step.

A step says what it can recover from with ``@retried(...)``, as databricks-sdk's
``retries.retried(on=...)`` does. How often and how patiently it is tried again -- the
count, the delays, the step's deadline, the clock -- is the step runner's one policy
(app.durable.retries), the same for every step. Two kinds of failure are told apart:

* **transient**: the same call may well work a moment later (a 5xx, a timeout, a
  dropped connection). Tried again a bounded number of times.
* **capacity**: the workspace is full for now (throttled, over a quota, its run queue
  full) and will have room later. Waited out for as long as the step's deadline allows.

Anything else fails the step at once. A step that declares nothing is retried as a
Databricks call (:data:`DATABRICKS`, which app.wiring makes the runner's default).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import requests
from databricks.sdk import errors as dbx

type Predicate = Callable[[BaseException], bool]

#: The attribute ``@retried`` sets on a step, read by the step runner.
ATTRIBUTE = "retryable"


def never(exc: BaseException) -> bool:
    """No failure of this kind."""
    return False


@dataclass(frozen=True)
class Retryable:
    """Which failures of a step are transient and which mean "no capacity now"."""

    transient: Predicate = never
    capacity: Predicate = never

    def kind(self, exc: BaseException) -> Literal["capacity", "transient"] | None:
        """How ``exc`` is retried: waited out, tried again, or (None) not at all."""
        if self.capacity(exc):
            return "capacity"
        return "transient" if self.transient(exc) else None


def retried[F: Callable[..., Any]](retryable: Retryable) -> Callable[[F], F]:
    """Declare which failures of the decorated step are worth trying again."""

    def declare(step: F) -> F:
        setattr(step, ATTRIBUTE, retryable)
        return step

    return declare


# -- Databricks calls -------------------------------------------------------------------

#: Failures that say "try again later", not "this will never work".
TRANSIENT: tuple[type[BaseException], ...] = (
    dbx.TooManyRequests,
    dbx.RequestLimitExceeded,
    dbx.TemporarilyUnavailable,
    dbx.InternalError,
    dbx.DeadlineExceeded,
    dbx.Aborted,
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
    socket.timeout,
)

#: Error codes and messages that say "the workspace has no room for this now".
CAPACITY_CODES = frozenset({"RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "REQUEST_LIMIT_EXCEEDED"})
CAPACITY_MESSAGES = ("queue limit", "maximum number of concurrent runs", "too many runs")


def is_capacity(exc: BaseException) -> bool:
    """The workspace is full for now -- throttled, over a quota, its run queue full -- and
    will have room later: worth waiting for as long as the run may last, not a failure."""
    if isinstance(exc, dbx.TooManyRequests):  # 429, RESOURCE_EXHAUSTED, REQUEST_LIMIT_EXCEEDED
        return True
    if not isinstance(exc, dbx.DatabricksError):
        return False
    text = str(exc).lower()
    return exc.error_code in CAPACITY_CODES or any(phrase in text for phrase in CAPACITY_MESSAGES)


def is_transient(exc: BaseException) -> bool:
    """Worth trying again: a transient failure of a Databricks call, or a full workspace."""
    return isinstance(exc, TRANSIENT) or is_capacity(exc)


#: A step that is one or a few Databricks calls.
DATABRICKS = Retryable(transient=is_transient, capacity=is_capacity)
#: A step whose every failure is final.
NEVER = Retryable()
