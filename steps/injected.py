"""What a step is given rather than passed: small protocols the service implements.

Steps never import the service (``app``). A step that needs something of the service
declares a parameter of one of these types; the service registers its implementation for
that type (app.wiring), and the step runner fills the parameter in. A test calls the step
with any object of the same shape.

Each protocol holds only what the steps use, so the service can change everything else.
They are ``runtime_checkable`` so that wiring the wrong object fails at start, not in
the middle of a run.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class StepIdentity(Protocol):
    """The step being executed: enough to make its side effects happen at most once."""

    @property
    def id(self) -> str:
        """The step's own promise id (``<run>:<n>``)."""
        ...

    @property
    def incarnation(self) -> str:
        """The run's incarnation: callback tokens are bound to it."""
        ...

    @property
    def idempotency_token(self) -> str:
        """The same on every re-execution of this step, different for any other step."""
        ...


class Callback(Protocol):
    """A callback a notebook can make: passed to it as notebook parameters."""

    def widgets(self) -> dict[str, str]: ...


@runtime_checkable
class CallbackIssuer(Protocol):
    """Issues the callback that lets a notebook settle one promise of one run incarnation."""

    def callback(self, promise_id: str, incarnation: str, base_url: str | None = None) -> Callback:
        """The callback for ``promise_id``; ``base_url`` (checked) instead of the default one."""
        ...
