"""Notebooks calling back: ``POST /resolve`` and ``POST /reject``.

Each call carries the promise id and its callback token (app.callbacks). A call
settles only the wait its token was issued for: that promise id, in the incarnation
of the run that issued it, and only a wait (``ctx.promise()``) -- never a step's
recorded result, a watcher, or the run itself. Each refusal is a 403 that says which
rule it broke. The settle itself is Resonate's: the first write wins. Sending the
same outcome and value again (a notebook retrying after a lost response) answers 200
``already_settled``; anything else arriving after the wait was settled -- another
value, the other outcome, a callback after the deadline or a cancel -- answers 409
naming the state it found, so the notebook learns its value was not taken.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from resonate.types import PromiseRecord, Value

from app.dependencies import RuntimeDep
from app.routers.answers import CALLBACK_REFUSED
from app.limits import check_json_depth
from app.runs import RUN_ID_PATTERN, get_promise, is_run, promise_kind, run_meta
from app.runtime import Runtime

router = APIRouter(tags=["callbacks"])

#: Any promise of a run: the run itself, ``<run>:2``, a watcher's ``<run>:d<hex>``. Only
#: callback waits are settled; the others are refused with a 403 that says what they are.
PROMISE_ID_PATTERN = RUN_ID_PATTERN.removesuffix("$") + r"(:[A-Za-z0-9.]{1,64}){0,8}$"
PromiseId = Annotated[str, Field(pattern=PROMISE_ID_PATTERN, description="The promise_id widget.")]
Token = Annotated[str, Field(max_length=128, description="The callback_signature widget.")]


class Resolution(BaseModel):
    id: PromiseId
    value: Any = None
    token: Token | None = None


class Rejection(BaseModel):
    id: PromiseId
    error: str = Field(max_length=65536, description="What went wrong, shown in the run's status.")
    token: Token | None = None


class Settlement(BaseModel):
    id: str
    state: Literal["resolved", "rejected", "rejected_canceled", "rejected_timedout"]
    already_settled: bool = Field(description="True when an earlier call with this same value settled it.")


@router.post("/resolve", response_model=Settlement, responses=CALLBACK_REFUSED)
async def resolve(
    runtime: RuntimeDep,
    body: Resolution | None = None,
    id: Annotated[str | None, Query(pattern=PROMISE_ID_PATTERN)] = None,
    value: Annotated[str | None, Query(max_length=65536)] = None,
    token: Annotated[str | None, Query(max_length=128)] = None,
) -> Settlement:
    """Resolve a callback promise with a JSON value: the pipeline waiting on it resumes.

    Takes a JSON body ``{id, value, token}``, or the original query form ``?id=&value=&token=``
    (``value`` is parsed as JSON when it is JSON, else kept as a string).
    """
    if body is None:
        if id is None:
            raise HTTPException(422, "send a JSON body {id, value, token} or ?id=&value=&token=")
        check_json_depth(value, runtime.settings.max_json_depth, "value")
        body = Resolution(id=id, value=_json_or_text(value), token=token)
    return await _settle(runtime, body.id, body.token, "resolved", body.value)


@router.post("/reject", response_model=Settlement, responses=CALLBACK_REFUSED)
async def reject(body: Rejection, runtime: RuntimeDep) -> Settlement:
    """Reject a callback promise: the waiting pipeline fails with ``error``."""
    return await _settle(runtime, body.id, body.token, "rejected", body.error)


async def _settle(
    runtime: Runtime, promise_id: str, token: str | None, outcome: str, payload: Any
) -> Settlement:
    if not token:
        raise HTTPException(
            401, "missing token: send the callback_signature widget's value as `token`"
        )
    issued_to = runtime.signer.issued_for(promise_id, token)
    if issued_to is None:
        raise HTTPException(
            403, f"token does not match promise {promise_id!r}: send the promise_id and "
            "callback_signature widgets of the notebook run DARA started for that wait"
        )
    run_id, _, position = promise_id.partition(":")
    root = await get_promise(runtime.resonate, run_id)
    if root is None or not is_run(root):
        raise HTTPException(
            404, f"no run {run_id!r}: it was never started, or the in-process server that "
            "held it was restarted"
        )
    if run_meta(root).incarnation != issued_to:
        raise HTTPException(
            403, f"token was issued to an earlier run that also had the id {run_id!r}; the run "
            "that has it now did not start your notebook, so its waits are not yours to settle"
        )
    if not position:
        raise HTTPException(
            403, f"{promise_id!r} is the run itself, not a wait; a callback settles only the "
            "wait it was issued for"
        )
    record = await get_promise(runtime.resonate, promise_id)
    if record is None:
        raise HTTPException(404, f"run {run_id!r} has no promise {promise_id!r}")
    kind = promise_kind(record)
    if kind != "callback":
        raise HTTPException(
            403, f"{promise_id!r} is a {kind} of run {run_id!r}, not a wait (ctx.promise()); "
            "only a wait can be settled from outside"
        )
    stored = payload if outcome == "resolved" else {"__type": "error", "message": payload}
    if record.state != "pending":
        return _repeat(record, outcome, stored)
    promises = runtime.resonate.promises
    if outcome == "resolved":
        settled = await promises.resolve(promise_id, Value(data=stored))
    else:
        settled = await promises.reject(promise_id, Value(data=stored))
    assert settled.state != "pending"
    if settled.state == outcome and settled.value.data == stored:
        return Settlement(id=promise_id, state=settled.state, already_settled=False)
    return _repeat(settled, outcome, stored)  # another settle won the race


def _repeat(record: PromiseRecord, outcome: str, stored: Any) -> Settlement:
    """A callback for a wait already settled: 200 if it says what was recorded, else 409."""
    if record.state == outcome and record.value.data == stored:
        return Settlement(id=record.id, state=record.state, already_settled=True)
    found = record.state if record.state != outcome else f"{record.state} with another value"
    raise HTTPException(
        409, f"{record.id!r} was already {found}; this callback's value was not recorded"
    )


def _json_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value
