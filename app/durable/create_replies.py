"""The reply to a run's create, kept for the start that is waiting for it.

A start must learn whether it created its run or found one already there (only the
creator answers 201). The create's reply already says so: it carries the run's root
promise as stored, with the incarnation of the start that created it. Keeping that
reply spares every start a read of the run right after creating it -- on Postgres a
second round trip through the pool per start. ``Resonate.run`` does not return the
reply, so the backend notes it on its way through ``send``, for ids a start expects.
"""

from __future__ import annotations

from resonate.resonate import Resonate
from resonate.types import PromiseRecord

from app.durable import resonate_format


class CreateReplies:
    """Replies to ``task.create`` for the run ids a start is waiting on; nothing else is kept."""

    def __init__(self) -> None:
        self._replies: dict[str, str | None] = {}

    def expect(self, run_id: str) -> None:
        """Keep the reply to the next create of ``run_id`` (call before starting it)."""
        self._replies.setdefault(run_id, None)

    def note(self, request: str, reply: str) -> None:
        """Called by the backend with every request it sent and its reply."""
        if self._replies and (run_id := resonate_format.task_create_id(request)) in self._replies:
            self._replies[run_id] = reply

    def take(self, run_id: str, resonate: Resonate) -> PromiseRecord | None:
        """The root promise the create of ``run_id`` replied with, once; None if none was kept."""
        reply = self._replies.pop(run_id, None)
        return resonate_format.created_root(reply, resonate) if reply is not None else None
