"""How to stop what a step started if its run ended while the step ran, declared beside it.

A step that starts work elsewhere (a Databricks run) cannot record it once its DARA
run has ended -- cancelled, timed out, failed -- while the step was in flight: the
backend refuses a step of a run that ended. No record would then name the work, so
nothing would stop it, and it would run, and bill, to its end. A step declares how to
stop it with ``@undone_if_run_ended(undo)``, as ``@retried`` declares its retries; the
step runner (app.durable.run_ended) then reads the step's run once after the step
returned and, if the run has ended, calls ``undo`` and fails the step, saying both.
Only a step that declares an undo pays that read.

``undo`` is called with the step's result and, by name, those of the step's own
arguments (injected ones included) that it declares; it returns what it did, in words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The attribute ``@undone_if_run_ended`` sets on a step, read by the step runner.
ATTRIBUTE = "undo_if_run_ended"


def undone_if_run_ended[F: Callable[..., Any]](undo: Callable[..., str]) -> Callable[[F], F]:
    """Declare what stops the decorated step's work when its run ended as it ran."""

    def declare(step: F) -> F:
        setattr(step, ATTRIBUTE, undo)
        return step

    return declare
