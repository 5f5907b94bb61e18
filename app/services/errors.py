"""What the run services refuse, as errors a caller can act on.

Each says what went wrong and what to do about it, in its message and nothing else (a
field no code reads is one no test can hold to its value); none knows HTTP. The routers
translate them to statuses (app.routers.answers.STATUS), so the same refusal reads the
same through the API, the pages and the ``resonate`` CLI.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the services refuse; ``str(error)`` says why and what to do."""


class PipelineNotFound(ServiceError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no pipeline named {name!r}; known: {', '.join(sorted(known)) or 'none'}")


class BadParams(ServiceError):
    """Parameters a pipeline does not take, or that only DARA may set."""

    @classmethod
    def invalid(cls, pipeline: str, problems: list[str]) -> BadParams:
        return cls(f"bad params for {pipeline}: {'; '.join(problems)}")


class BadCursor(ServiceError):
    """A listing cursor this service did not issue."""


class RunNotFound(ServiceError):
    def __init__(self, run_id: str, why: str = "") -> None:
        super().__init__(f"no run {run_id!r}{why}")


class PromiseNotFound(ServiceError):
    def __init__(self, run_id: str, promise_id: str) -> None:
        super().__init__(f"run {run_id!r} has no promise {promise_id!r}")


class IdTaken(ServiceError):
    """The run id is in use by a run of another pipeline."""

    def __init__(self, run_id: str, pipeline: str) -> None:
        super().__init__(f"run {run_id!r} exists and runs {pipeline!r}; pick another id")


class NotYours(ServiceError):
    """Someone else started the run, and the caller is not one of DARA_ADMINS."""

    def __init__(self, run_id: str, started_by: str, user: str, action: str = "cancel") -> None:
        super().__init__(
            f"run {run_id!r} was started by {started_by!r}, not you ({user!r}); only they "
            f"or one of DARA_ADMINS may {action} it"
        )


class RunEnded(ServiceError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id!r} is already {status}; nothing to cancel")


class NotRepairable(ServiceError):
    """Nothing of the run can be repaired: it is not waiting on a Databricks run that failed."""

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(f"run {run_id!r} cannot be repaired: {why}")


class MissingToken(ServiceError):
    def __init__(self) -> None:
        super().__init__("missing token: send the callback_signature widget's value as `token`")


class TokenRefused(ServiceError):
    """A callback token that is not this wait's: each kind of refusal takes only what it names."""

    @classmethod
    def not_this_promise(cls, promise_id: str) -> TokenRefused:
        return cls(
            f"token does not match promise {promise_id!r}: send the promise_id and "
            "callback_signature widgets of the notebook run DARA started for that wait"
        )

    @classmethod
    def earlier_run(cls, run_id: str) -> TokenRefused:
        return cls(
            f"token was issued to an earlier run that also had the id {run_id!r}; the run "
            "that has it now did not start your notebook, so its waits are not yours to settle"
        )


class NotAWait(ServiceError):
    """The promise is the run itself, or a step, watcher or sleep of it: not settled from outside."""

    def __init__(self, promise_id: str, run_id: str, kind: str) -> None:
        #: Read by the resonate CLI's audit line (app.resonate_protocol).
        self.run_id = run_id
        #: ``run``, or the promise's kind (app.services.run_status.StepKind).
        self.kind = kind
        if kind == "run":
            message = (
                f"{promise_id!r} is the run itself, not a wait; a callback settles only the wait it was issued for"
            )
        else:
            message = (
                f"{promise_id!r} is a {kind} of run {run_id!r}, not a wait (ctx.promise()); "
                "only a wait can be settled from outside"
            )
        super().__init__(message)


class AlreadySettled(ServiceError):
    """The wait was settled otherwise before: another value, the other outcome, its deadline or a cancel."""

    def __init__(self, promise_id: str, state: str, *, same_outcome: bool) -> None:
        found = f"{state} with another value" if same_outcome else state
        super().__init__(f"{promise_id!r} was already {found}; this callback's value was not recorded")
