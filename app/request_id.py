"""A request id for every HTTP request, in its log lines and in its answer's ``X-Request-Id``.

A caller (or a proxy in front) may send its own ``X-Request-Id`` to follow a request
through its logs and ours; one that is not a plain token -- too long, or with spaces,
quotes or control characters that could forge log lines -- is replaced by a new one, not
refused. The id is set before anything else runs, so even a refusal carries it.

A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: that one runs the
app in a task of its own, and the context variables set here would not reach uvicorn's
access log line, which is written from this request's task.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from app.logs import REQUEST_ID, RUN_ID

HEADER = "x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
#: ``/runs/{id}`` and what hangs off it: the run a request is about, known from its path.
_RUN_PATH = re.compile(r"/(?:api/)?runs/(?P<run>[A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:/[a-z]+)?")
_NOT_RUNS = frozenset({"upload_and_process"})

type Scope = dict[str, Any]
type Message = dict[str, Any]


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` if it is a sane token, else a new one."""
    for name, value in scope.get("headers") or ():
        if name == HEADER.encode():
            sent = value.decode("latin-1")
            return sent if SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
    return uuid.uuid4().hex


def run_of(path: str) -> str | None:
    match = _RUN_PATH.fullmatch(path)
    return match["run"] if match and match["run"] not in _NOT_RUNS else None


class RequestId:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        request_token = REQUEST_ID.set(request_id)
        run_token = RUN_ID.set(run_of(scope.get("path", "")))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            RUN_ID.reset(run_token)
            REQUEST_ID.reset(request_token)
