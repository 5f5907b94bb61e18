"""Where a callback is verified and settled: a notebook's answer to the wait it was started for.

A call settles only the wait its token was issued for (app.callback_tokens): that
promise id, in the incarnation of the run that issued it, and only a wait
(``ctx.promise()``) -- never a step's recorded result, a watcher, or the run itself.
Each refusal says which rule it broke. The settle itself is Resonate's: the first
write wins, and only the call whose write was kept is told it settled the wait
(app.durable.resonate_format.settle_once). Sending the same outcome and value again (a notebook
retrying after a lost response, even one racing its first try) is answered
``already_settled``; anything else arriving after the wait was settled -- another
value, the other outcome, a callback after the deadline or a cancel -- is refused
naming the state it found, so the notebook learns its value was not taken.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from resonate.types import PromiseRecord

from app.durable import resonate_format
from app.durable.resonate_format import get_promise, settle_once
from app.logs import bind_run
from app.runtime import Runtime
from app.services.errors import AlreadySettled, MissingToken, NotAWait, PromiseNotFound, RunNotFound, TokenRefused
from app.services.run_status import is_run, promise_kind, run_meta

Outcome = Literal["resolved", "rejected"]


class Settlement(BaseModel):
    id: str
    state: Literal["resolved", "rejected", "rejected_canceled", "rejected_timedout"]
    already_settled: bool = Field(description="True when another call with this same value settled it.")


async def find_wait(runtime: Runtime, promise_id: str) -> PromiseRecord:
    """The callback wait ``promise_id`` names. Raises PromiseNotFound, or NotAWait for
    the run itself or any other promise of it (a step, a watcher, a sleep)."""
    record = await get_promise(runtime.resonate, promise_id)
    if record is None:
        raise PromiseNotFound(resonate_format.run_of(promise_id), promise_id)
    run_id = resonate_format.origin(record) or resonate_format.run_of(promise_id)
    if record.id == run_id:
        raise NotAWait(promise_id, run_id, "run")
    if (kind := promise_kind(record)) != "callback":
        raise NotAWait(promise_id, run_id, kind)
    return record


async def settle(runtime: Runtime, promise_id: str, token: str | None, outcome: Outcome, payload: Any) -> Settlement:
    """Settle the wait ``promise_id`` with ``payload`` (a value, or a rejection's message)
    if ``token`` was issued for it. Raises MissingToken, TokenRefused, RunNotFound,
    NotAWait, PromiseNotFound or AlreadySettled."""
    if not token:
        raise MissingToken()
    issued_to = runtime.signer.issued_for(promise_id, token)
    if issued_to is None:
        raise TokenRefused.not_this_promise(promise_id)
    run_id = resonate_format.run_of(promise_id)
    bind_run(run_id)  # this request's log lines are about that run
    root = await get_promise(runtime.resonate, run_id)
    if root is None or not is_run(root):
        raise RunNotFound(run_id, ": it was never started, or the in-process server that held it was restarted")
    if run_meta(root).incarnation != issued_to:
        raise TokenRefused.earlier_run(run_id)
    if resonate_format.is_root_id(promise_id):
        raise NotAWait(promise_id, run_id, "run")
    record = await find_wait(runtime, promise_id)
    stored = payload if outcome == "resolved" else resonate_format.error_value(payload)
    if record.state != "pending":
        return _repeat(record, outcome, stored)
    # Before the settle: the pipeline may resume before the settle call returns here.
    runtime.metrics.callback_settling(promise_id)
    # Found pending is not settled by this call: another callback, even with this very
    # value, may settle first, and Resonate answers both alike. The key tells them apart.
    settled, won = await settle_once(runtime.resonate.promises, promise_id, outcome, stored)
    if won:
        return Settlement(id=promise_id, state=outcome, already_settled=False)
    runtime.metrics.callback_lost(promise_id)
    return _repeat(settled, outcome, stored)  # another settle won the race


def _repeat(record: PromiseRecord, outcome: str, stored: Any) -> Settlement:
    """A callback for a wait already settled: a repeat of what was recorded, or refused."""
    assert record.state != "pending"  # the callers pass a settled record
    if record.state == outcome and record.value.data == stored:
        return Settlement(id=record.id, state=record.state, already_settled=True)
    raise AlreadySettled(record.id, record.state, same_outcome=record.state == outcome)
