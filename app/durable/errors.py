"""The errors a pipeline sees, and the hint each Databricks failure comes with.

Which failures are worth retrying is each step's declaration (steps.retryable), and how
they are retried the runner's policy (app.durable.retries).

Errors cross the durability boundary as ``{"message": ...}`` (plus a best-effort
pickle). Everything here therefore keeps its useful content *in the message* and
pickles by its constructor arguments, so a run's status, the ``resonate`` CLI and a
replay after a restart all show the same text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from databricks.sdk import errors as dbx

#: How a wait that reached its deadline starts its error message (the run's status
#: then reads ``timed_out``).
TIMED_OUT = "timed out:"


class WaitTimedOut(Exception):
    """Nothing settled a wait (``ctx.promise()``) by its deadline."""

    def __init__(self, promise_id: str, deadline_ms: int) -> None:
        self.promise_id = promise_id
        self.deadline_ms = deadline_ms
        deadline = datetime.fromtimestamp(deadline_ms / 1000, UTC).isoformat(timespec="seconds")
        super().__init__(
            f"{TIMED_OUT} nothing settled {promise_id} by its deadline {deadline}; raise "
            "DARA_CALLBACK_TIMEOUT or pass ctx.promise(timeout=...) if the work takes longer"
        )

    def __reduce__(self) -> tuple[type[WaitTimedOut], tuple[str, int]]:
        return (WaitTimedOut, (self.promise_id, self.deadline_ms))


#: What to do about a permanent Databricks failure, by error class.
HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (
        dbx.Unauthenticated,
        (
            "check DATABRICKS_HOST and the credentials databricks-sdk finds "
            "(token, profile or OAuth), e.g. with `databricks auth describe`"
        ),
    ),
    (dbx.PermissionDenied, ("grant the service principal the permission named above (for jobs: CAN MANAGE RUN)")),
    (dbx.NotFound, "check that the id or name exists in this workspace"),
    (dbx.ResourceDoesNotExist, "check that the id or name exists in this workspace"),
    (dbx.InvalidParameterValue, "fix the parameter named above"),
    (dbx.BadRequest, "fix the request described above"),
)


def hint_for(exc: BaseException) -> str | None:
    return next((hint for kind, hint in HINTS if isinstance(exc, kind)), None)


class StepError(Exception):
    """A step failed for good: permanent error, or its retries exhausted (app.durable.retries)."""

    def __init__(self, step: str, message: str, hint: str | None = None) -> None:
        self.step = step
        self.detail = message
        self.hint = hint
        text = f"{step}: {message}"
        super().__init__(f"{text} (hint: {hint})" if hint else text)

    def __reduce__(self) -> tuple[type[StepError], tuple[str, str, str | None]]:
        return (StepError, (self.step, self.detail, self.hint))

    @classmethod
    def wrap(cls, step: str, exc: Exception, *, attempts: int) -> StepError:
        message = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__
        if cause is not None and str(cause) not in message:
            message += f" (last error: {type(cause).__name__}: {cause})"
        if attempts > 1:
            message += f" (after {attempts} attempts)"
        return cls(step, message, hint_for(exc))


class NotTriedAgain(StepError):
    """The run a step works for ended while the step waited to try again, so it was not:
    a try that got in would start Databricks work for a run nobody waits for or cancels."""

    def __init__(self, step: str, ended: str, capacity: bool) -> None:
        self.ended = ended
        self.capacity = capacity
        waiting = "while waiting for workspace capacity; not started" if capacity else "between tries; not tried again"
        super().__init__(step, f"{ended} {waiting}")

    def __reduce__(self) -> tuple[type[NotTriedAgain], tuple[str, str, bool]]:  # type: ignore[override]
        return (NotTriedAgain, (self.step, self.ended, self.capacity))


class EndedWhileRunning(StepError):
    """The run a step works for ended while the step ran, so its result could not be
    recorded: what it started was stopped (steps.undone, app.durable.run_ended)."""

    def __init__(self, step: str, ended: str, undone: str) -> None:
        self.ended = ended
        self.undone = undone
        super().__init__(step, f"{ended} while the step ran; {undone}")

    def __reduce__(self) -> tuple[type[EndedWhileRunning], tuple[str, str, str]]:  # type: ignore[override]
        return (EndedWhileRunning, (self.step, self.ended, self.undone))
