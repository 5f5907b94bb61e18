"""Notebooks calling back: ``POST /api/resolve`` and ``POST /api/reject``.

They live under ``/api/`` because the Databricks Apps proxy lets a token-authenticated
(machine-to-machine) request through only to ``/api/`` routes, and a notebook calls back
with a service principal's OAuth token. ``/resolve`` and ``/reject``, where notebooks
with an older callback cell still call, answer the same (outside the Apps proxy).

Each call carries the promise id and its callback token (app.callback_tokens), and
is verified and settled by app.services.settling. A refused token is a 403 that says
which rule it broke; a repeat of what was recorded answers 200 ``already_settled``;
anything else arriving after the wait was settled answers 409 naming the state it found.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from app.dependencies import RuntimeDep
from app.limits import check_json_depth
from app.routers.answers import CALLBACK_REFUSED
from app.services import settling
from app.services.run_status import RUN_ID_PATTERN
from app.services.settling import Settlement

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


@router.post("/api/resolve", response_model=Settlement, responses=CALLBACK_REFUSED)
@router.post("/resolve", response_model=Settlement, responses=CALLBACK_REFUSED, deprecated=True)
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
    return await settling.settle(runtime, body.id, body.token, "resolved", body.value)


@router.post("/api/reject", response_model=Settlement, responses=CALLBACK_REFUSED)
@router.post("/reject", response_model=Settlement, responses=CALLBACK_REFUSED, deprecated=True)
async def reject(body: Rejection, runtime: RuntimeDep) -> Settlement:
    """Reject a callback promise: the waiting pipeline fails with ``error``."""
    return await settling.settle(runtime, body.id, body.token, "rejected", body.error)


def _json_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value
