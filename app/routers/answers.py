"""Error answers: the status each service refusal is given, and the answers routes declare
in the OpenAPI schema, so clients (and the fuzz test) know every status a route may give
besides its success."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response

from app.services import errors

type Answers = dict[int | str, dict[str, Any]]

#: The status of each refusal of the run services (app.services.errors).
STATUS: dict[type[errors.ServiceError], int] = {
    errors.MissingToken: 401,
    errors.NotYours: 403,
    errors.TokenRefused: 403,
    errors.NotAWait: 403,
    errors.PipelineNotFound: 404,
    errors.RunNotFound: 404,
    errors.PromiseNotFound: 404,
    errors.IdTaken: 409,
    errors.RunEnded: 409,
    errors.AlreadySettled: 409,
    errors.NotRepairable: 409,
    errors.BadParams: 422,
    errors.BadCursor: 422,
}


def http_error(exc: errors.ServiceError) -> HTTPException:
    """``exc`` as an HTTP error: its status, and its message as the detail."""
    return HTTPException(STATUS[type(exc)], str(exc))


async def refused(request: Request, exc: Exception) -> Response:
    """The app's handler for a service refusal a route let through (app.main installs it):
    answered as the route would answer ``http_error(exc)``."""
    assert isinstance(exc, errors.ServiceError)
    return await http_exception_handler(request, http_error(exc))


def answer(status: int, description: str) -> Answers:
    return {status: {"description": description}}


NO_RUN = answer(404, "No run of that id.")
NO_PIPELINE = answer(404, "No pipeline of that name.")
NO_FOLDER = answer(404, "No such folder under DARA_JOBS_ROOT.")
ID_TAKEN = answer(409, "The id names a run of another pipeline.")
RUN_ENDED = answer(409, "The run has already ended.")
NOT_REPAIRABLE = answer(
    409, "The run is not waiting on a Databricks run that failed, or the workspace cannot repair runs."
)
NOT_YOURS = answer(403, "Someone else started the run, and you are not one of DARA_ADMINS.")
CALLBACK_REFUSED = (
    answer(401, "No token.")
    | answer(403, "The token is not this wait's: another promise's, an earlier run's of the same id, or not a wait.")
    | answer(404, "No such run or promise.")
    | answer(409, "The wait was already settled otherwise: another value, the other outcome, its deadline or a cancel.")
)
