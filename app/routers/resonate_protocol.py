"""``POST /resonate/``: the Resonate protocol, for the ``resonate`` CLI (app.resonate_protocol).

Point the CLI at it with ``-S http://<dara>/resonate`` (it posts to ``<server>/``) and,
when DARA_API_TOKEN is set, ``-T <token>``, which it sends as a bearer token. The
token is checked here rather than by the app's guard, so that a refusal, like every
answer, is an envelope whose message the CLI prints; the HTTP status is the
envelope's ``head.status``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from app.dependencies import RuntimeDep
from app.durable.protocol_backend import PROTOCOL_VERSION
from app.limits import ERROR_BODY
from app.resonate_protocol import READS, SETTLE, answer, refusal
from app.security import ANONYMOUS, ApiAccess

_bearer = HTTPBearer(auto_error=False)

#: An answer: ``data`` is the result, or (status outside 2xx) the message the CLI prints.
ANSWER = {
    "type": "object",
    "properties": {
        "kind": {"type": "string"},
        "head": {
            "type": "object",
            "properties": {"corrId": {"type": "string"}, "status": {"type": "integer"}, "version": {"type": "string"}},
            "required": ["corrId", "status", "version"],
        },
        "data": {},
    },
    "required": ["kind", "head", "data"],
}
#: A request, as the CLI builds it (``build_envelope`` in the server's ``src/cli.rs``).
_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": [*READS, SETTLE]},
                    "head": {
                        "type": "object",
                        "properties": {
                            "corrId": {"type": "string"},
                            "version": {"type": "string", "enum": [PROTOCOL_VERSION]},
                            "auth": {"type": "string"},
                        },
                        "required": ["corrId", "version"],
                    },
                    "data": {"type": "object"},
                },
                "required": ["kind", "head", "data"],
            }
        }
    },
}


def _answers(description: str, *, limits: bool = False) -> dict[str, Any]:
    # The body limits (413, 422) and the host and cross-site guards (400, 403) answer
    # before this route, in their own shape.
    schema = {"anyOf": [ANSWER, ERROR_BODY]} if limits else ANSWER
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _answers("The answer: {promise}, {task}, or {promises, cursor?}."),
    400: _answers("A malformed envelope, an unknown kind, or data the kind does not take.", limits=True),
    401: _answers("No API token was sent (nor a forwarded user, where trusted)."),
    403: _answers("A wrong API token, a kind DARA refuses, or a settle of what is not a callback wait.", limits=True),
    404: _answers("No such promise or task; or DARA runs on a Resonate server, which answers itself."),
    413: _answers("The request body is over DARA_MAX_VALUE_BYTES.", limits=True),
    422: _answers("A value nested deeper than DARA_MAX_JSON_DEPTH, or holding an unpaired surrogate.", limits=True),
    503: _answers("The Resonate backend is unreachable; try again shortly."),
}


def build_router(access: ApiAccess) -> APIRouter:
    """The route, behind ``access`` (the API token), refusing in the protocol's shape."""
    router = APIRouter(prefix="/resonate", tags=["resonate protocol"])

    async def protocol(request: Request, runtime: RuntimeDep) -> JSONResponse:
        """One request of the Resonate protocol: reads, and settling a run's callback wait."""
        body = await request.body()
        user = ANONYMOUS
        if access.enabled:
            try:
                user = await access.authenticate(request, await _bearer(request))
            except HTTPException as exc:
                refused = refusal(body, exc.status_code, str(exc.detail), runtime.settings.max_json_depth)
                return JSONResponse(refused, status_code=exc.status_code, headers=exc.headers)
        reply = await answer(runtime, body, user)
        return JSONResponse(reply, status_code=reply["head"]["status"])

    # Declared as the guarded routers' HTTPBearer declares it (the same scheme name).
    security: dict[str, Any] = {"security": [{"DARA_API_TOKEN": []}]} if access.token_digest is not None else {}
    for path in ("/", ""):  # the CLI posts to "<server>/"; a client may leave the slash off
        router.add_api_route(
            path,
            protocol,
            methods=["POST"],
            name=f"resonate_protocol{path.replace('/', '_slash')}",
            response_class=JSONResponse,
            responses=RESPONSES,
            openapi_extra={"requestBody": _REQUEST_BODY, **security},
        )
    return router
