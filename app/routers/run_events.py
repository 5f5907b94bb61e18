"""Databricks job notifications: ``POST /api/databricks/run-events``.

Databricks' generic webhook destination authenticates with HTTP Basic auth, which is
checked here before the body is even parsed: the body is read by hand, not by FastAPI,
which would parse JSON before any dependency ran (app.services.run_events says what is
done with it). The route answers 404 while DARA_RUN_EVENTS_USER and
DARA_RUN_EVENTS_PASSWORD are unset, and it is not behind DARA_API_TOKEN: Databricks
cannot send a bearer token.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBasic
from pydantic import BaseModel, ValidationError

from app.dependencies import RuntimeDep
from app.routers.answers import answer
from app.services.run_events import RunEvent, is_databricks

router = APIRouter(tags=["run events"])

#: Parses the header only; called by hand, so the schema gets no security scheme that
#: would read as if the rest of the API took Basic auth.
_basic = HTTPBasic(auto_error=False, realm="DARA run events")


class Acknowledged(BaseModel):
    status: Literal["accepted"] = "accepted"


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` written in place, as an OpenAPI request body needs them."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(item) for item in node] if isinstance(node, list) else node

    return inline(schema)


_BODY = {"required": True, "content": {"application/json": {"schema": _inlined(RunEvent.model_json_schema())}}}


async def from_databricks(request: Request, runtime: RuntimeDep) -> None:
    """Refuse the request unless run events are on and it carries the destination's
    credentials; a dependency, so that it runs before the body is read."""
    settings = runtime.settings
    if not settings.run_events_enabled:
        raise HTTPException(
            404, "run events are off: set DARA_RUN_EVENTS_USER and DARA_RUN_EVENTS_PASSWORD to take them"
        )
    credentials = await _basic(request)  # raises the 401 itself for a header it cannot decode
    if credentials is None or not is_databricks(settings, credentials.username, credentials.password):
        raise HTTPException(
            401,
            "send the notification destination's user name and password as HTTP Basic auth",
            headers={"WWW-Authenticate": 'Basic realm="DARA run events"'},
        )


@router.post(
    "/api/databricks/run-events",
    status_code=202,
    dependencies=[Depends(from_databricks)],
    responses=answer(401, "Not the notification destination's credentials.")
    | answer(404, "Run events are off (DARA_RUN_EVENTS_USER and DARA_RUN_EVENTS_PASSWORD unset).")
    | answer(422, "Not a notification: each error's `loc` and `msg` say what to fix."),
    openapi_extra={"requestBody": _BODY},
)
async def run_event(request: Request, runtime: RuntimeDep) -> Acknowledged:
    """Take a Databricks job notification: a run that ended is checked now, and its wait
    fails if the run ended without calling back. The answer is the same for every
    well-formed event, whether DARA watches its run or not."""
    try:
        event = RunEvent.model_validate_json(await request.body())
    except ValidationError as exc:  # answered as FastAPI answers a body it refuses
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
    runtime.run_events.receive(event)
    return Acknowledged()
