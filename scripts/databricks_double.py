"""A double of the Databricks REST API at the HTTP boundary, for step tests and benchmarks.

Most tests run against brickhouse, the local emulator, which implements jobs, clusters,
workspace files, Unity Catalog and SQL statements. It has no one-time runs
(``runs/submit``), no Files API, no Lakeflow pipelines and no Vector Search, and it
cannot be made to answer a chosen sequence (throttled, then unavailable, then fine).
Tests of steps that need any of those talk to this double instead.

The double sits where the real service would: a real ``WorkspaceClient`` sends real
HTTP to it, so what is exercised is the step *and* databricks-sdk's serialization,
error mapping and retries -- nothing inside the SDK is patched. Its answers have the
shapes the real API returns: the ``recorded_*`` builders below follow the paths and
field names in databricks-sdk's ``service`` modules and the REST API reference (they
were written from those, not captured from a live workspace), including the fields a
step does not read, so parsing is exercised against a realistic body. Every 2xx body
served is checked against databricks-sdk's types as it goes out (scripts/databricks_shapes.py):
a field they lack, or a run whose ``status`` disagrees with its ``state``, fails the test
(the ``databricks_double`` fixture in tests/conftest.py).

Three parts:

* **Routes**: ``double.route("GET", "/api/2.0/sql/statements/{statement_id}", answer)``
  where ``answer`` is a canned JSON value, a :class:`Response`, or a handler called
  with the :class:`RecordedRequest` (path parameters in ``request.params``).
* **A record** of every request (method, path, query, headers, body), in order.
* **A queue per route** -- ``double.queue("POST", path, throttled(), unavailable())`` --
  served in order before the route's answer: any :class:`Response` (e.g. a 200 with a
  ``PENDING`` state), :func:`throttled`, :func:`unavailable`, :class:`Delay` (then go
  on) and :class:`Drop` (close the socket without answering).

A list route pages as the API does with ``paged(key, items, page_size=...)``: each page
ends with a ``next_page_token`` while more follow, which databricks-sdk's iterators send
back as ``page_token``.
"""

from __future__ import annotations

import collections
import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from scripts.databricks_shapes import STATUS_OF_LIFE_CYCLE
from scripts.databricks_shapes import problems as shape_problems

#: The workspace id the double advertises, as a real workspace's discovery endpoint does.
WORKSPACE_ID = "1234567890123456"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the double received it."""

    method: str
    #: The path with percent-escapes decoded (``/api/2.0/fs/files/Volumes/a b.txt``).
    path: str
    #: The path exactly as sent (``/api/2.0/fs/files/Volumes/a%20b.txt``).
    raw_path: str
    query: dict[str, list[str]]
    #: Header names lower-cased, so lookups do not depend on the client's spelling.
    headers: dict[str, str]
    body: bytes
    #: Path parameters of the route that matched (empty if none did).
    params: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None for an empty body."""
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Response:
    """An HTTP answer. ``body`` is JSON-encoded unless it is bytes; None sends no body."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before going on to the next queued item or the route's answer.

    Longer than the client's ``http_timeout_seconds``, it is a read timeout for the
    client -- while the server still goes on and serves the request, as a real one
    would after the client gave up.
    """

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending a response (a reset/dropped connection)."""


Answer = Response | dict[str, Any] | list[Any] | Callable[[RecordedRequest], Any]
#: A queued dict or list is a 200 with that JSON body, like a route's canned answer.
Queued = Response | dict[str, Any] | list[Any] | Delay | Drop


def api_error(status: int, error_code: str, message: str, **headers: str) -> Response:
    """An error in the body shape every Databricks REST API uses."""
    return Response(status, {"error_code": error_code, "message": message}, headers)


def throttled(retry_after: int = 0) -> Response:
    """A 429 as the platform sends it when a rate limit is hit."""
    return api_error(
        429,
        "REQUEST_LIMIT_EXCEEDED",
        "Too many requests. Please wait a moment and try again.",
        **{"Retry-After": str(retry_after)},
    )


def unavailable(retry_after: int = 0) -> Response:
    """A 503, as returned while a control-plane service is briefly unavailable."""
    return api_error(
        503,
        "TEMPORARILY_UNAVAILABLE",
        "The service is temporarily unavailable. Please try again later.",
        **{"Retry-After": str(retry_after)},
    )


def no_content() -> Response:
    """What the Files API answers to a successful upload: 204, no body."""
    return Response(204)


def paged(key: str, items: list[Any], *, page_size: int, has_more: bool = False) -> Callable[[RecordedRequest], Any]:
    """A list route's answer, ``items`` under ``key`` a page at a time, as the API pages.

    A page ends with ``next_page_token`` while more follow (the SDK's iterators ask again
    with it as ``page_token``), and the Jobs API also says ``has_more``. A smaller
    ``limit`` or ``max_results`` in the request makes pages smaller; a token this route
    did not issue is a 400, as from the API.
    """

    def answer(request: RecordedRequest) -> Any:
        token = request.query.get("page_token", [""])[0]
        if token and not re.fullmatch(r"page-\d+", token):
            return api_error(400, "INVALID_PARAMETER_VALUE", f"Invalid page token: {token}")
        start = int(token.removeprefix("page-")) if token else 0
        asked = (request.query.get("limit") or request.query.get("max_results") or [""])[0]
        size = min(page_size, int(asked)) if asked.isdigit() and int(asked) > 0 else page_size
        body: dict[str, Any] = {key: items[start : start + size]} if items[start : start + size] else {}
        more = start + size < len(items)
        if more:
            body["next_page_token"] = f"page-{start + size}"
        if start:
            body["prev_page_token"] = f"page-{max(start - size, 0)}"
        if has_more:
            body["has_more"] = more
        return body

    return answer


@dataclass
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    answer: Answer
    queue: collections.deque[Queued] = field(default_factory=collections.deque)


def _compile(pattern: str) -> re.Pattern[str]:
    """``{name}`` matches one path segment, ``{name:path}`` the rest of the path."""
    regex = ""
    for literal, name, kind in re.findall(r"([^{]*)(?:\{(\w+)(?::(\w+))?\})?", pattern):
        regex += re.escape(literal)
        if name:
            regex += f"(?P<{name}>.+)" if kind == "path" else f"(?P<{name}>[^/]+)"
    return re.compile(regex + r"\Z")


class DatabricksDouble:
    """A threaded HTTP server on 127.0.0.1 that answers like a Databricks workspace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: list[_Route] = []
        self._requests: list[RecordedRequest] = []
        #: Exceptions raised by handlers (answered with a 500); the tests' fixture fails on any.
        self.handler_errors: list[BaseException] = []
        #: What in the bodies served the real API would not send (scripts/databricks_shapes.py).
        self.shape_errors: list[str] = []
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long close() waits for the loop to notice
            name="databricks-double",
            daemon=True,
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # databricks-sdk asks every host for this while it builds its Config.
        self.route(
            "GET",
            "/.well-known/databricks-config",
            {"workspace_id": WORKSPACE_ID, "oidc_endpoint": f"{self.url}/oidc"},
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()  # releases requests parked in a Delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- configuring -----------------------------------------------------------------
    def route(self, method: str, pattern: str, answer: Answer) -> None:
        """Answer ``method pattern`` with ``answer`` (replacing an earlier route for it)."""
        with self._lock:
            self._routes = [r for r in self._routes if (r.method, r.pattern) != (method.upper(), pattern)]
            self._routes.append(_Route(method.upper(), pattern, _compile(pattern), answer))

    def queue(self, method: str, pattern: str, *items: Queued) -> None:
        """Serve ``items`` in order to the next requests on a route, before its answer."""
        with self._lock:
            self._find(method.upper(), pattern).queue.extend(items)

    def queued(self, method: str, pattern: str) -> int:
        """How many queued items the route has not served yet."""
        with self._lock:
            return len(self._find(method.upper(), pattern).queue)

    def _find(self, method: str, pattern: str) -> _Route:
        for route in self._routes:
            if (route.method, route.pattern) == (method, pattern):
                return route
        msg = f"no route {method} {pattern}; add one with route() before queueing on it"
        raise KeyError(msg)

    # -- inspecting ------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order, except the SDK's host-metadata probe."""
        with self._lock:
            return [r for r in self._requests if r.path != "/.well-known/databricks-config"]

    def requests_to(self, method: str, pattern: str) -> list[RecordedRequest]:
        """The requests a route pattern matches (whether or not it was routed)."""
        regex = _compile(pattern)
        return [r for r in self.requests if r.method == method.upper() and regex.match(r.path)]

    def only_request(self, method: str, pattern: str) -> RecordedRequest:
        """The single request to a route; fails the test if there were none or several."""
        matching = self.requests_to(method, pattern)
        assert len(matching) == 1, f"expected one {method} {pattern}, got {self.requests}"
        return matching[0]

    # -- serving (called on the server's request threads) -----------------------------
    def _serve(self, request: RecordedRequest) -> tuple[RecordedRequest, Response | Delay | Drop]:
        with self._lock:
            route, params = self._match(request.method, request.path)
            request = RecordedRequest(**{**vars(request), "params": params})
            self._requests.append(request)
            if route is None:
                return request, api_error(
                    404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'"
                )
            if route.queue:
                return request, _as_served(route.queue.popleft())
            answer = route.answer
        return request, _as_response(answer(request) if callable(answer) else answer)

    def _next_after_delay(self, request: RecordedRequest) -> Response | Delay | Drop:
        with self._lock:
            route, _ = self._match(request.method, request.path)
            assert route is not None
            if route.queue:
                return _as_served(route.queue.popleft())
            answer = route.answer
        return _as_response(answer(request) if callable(answer) else answer)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in reversed(self._routes):
            found = route.regex.match(path)
            if route.method == method and found:
                return route, found.groupdict()
        return None, {}


def _as_served(item: Queued) -> Response | Delay | Drop:
    return item if isinstance(item, Delay | Drop) else _as_response(item)


def _as_response(answer: Any) -> Response:
    if isinstance(answer, Response):
        return answer
    return Response(200, {} if answer is None else answer)


def _handler_for(double: DatabricksDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a Drop never hits a pooled socket.
        protocol_version = "HTTP/1.0"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=unquote(split.path),
                raw_path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            try:
                request, served = double._serve(request)
                while isinstance(served, Delay):
                    if double._closing.wait(served.seconds):
                        return
                    served = double._next_after_delay(request)
            except Exception as exc:  # noqa: BLE001 -- a bug in a test's handler: make it loud
                double.handler_errors.append(exc)
                served = api_error(500, "INTERNAL_ERROR", f"databricks double: {exc!r}")
            if isinstance(served, Response) and 200 <= served.status < 300 and isinstance(served.body, dict | list):
                double.shape_errors += shape_problems(request.method, request.path, served.body)
            if isinstance(served, Drop):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send(served)

        def _send(self, response: Response) -> None:
            if response.body is None:
                payload = b""
            elif isinstance(response.body, bytes):
                payload = response.body
            else:
                payload = json.dumps(response.body).encode()
            try:
                self.send_response(response.status)
                if payload and not isinstance(response.body, bytes):
                    self.send_header("Content-Type", "application/json")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. timed out during a Delay)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the record is the log

    return Handler


def workspace_client(
    double: DatabricksDouble,
    *,
    retry_timeout_seconds: int = 5,
    http_timeout_seconds: float = 5,
) -> WorkspaceClient:
    """A real client for the double, with retry and HTTP timeouts short enough for tests.

    ``retry_timeout_seconds`` bounds databricks-sdk's own retries of 429/503/timeouts;
    it must be at least 1 (the SDK treats 0 as "unset", i.e. 300 seconds).
    """
    assert retry_timeout_seconds >= 1, "0 means the SDK's default of 300 seconds"
    config = Config(
        host=double.url,
        token="test",
        auth_type="pat",
        retry_timeout_seconds=retry_timeout_seconds,
        http_timeout_seconds=http_timeout_seconds,
    )
    return WorkspaceClient(config=config)


# -- recorded shapes ---------------------------------------------------------------------
# Builders of response bodies as the real API returns them. Optional fields the real
# service always fills in are filled in here too, so a step that trips over them fails
# here rather than in a workspace.


def recorded_submit_run(run_id: int) -> dict[str, Any]:
    """``POST /api/2.2/jobs/runs/submit``."""
    return {"run_id": run_id}


#: ``status.termination_details`` (code, type) of a run that ended so.
_TERMINATION = {
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    "CANCELED": ("USER_CANCELED", "CLIENT_ERROR"),
    "SKIPPED": ("SKIPPED", "SUCCESS"),
    "INTERNAL_ERROR": ("INTERNAL_ERROR", "INTERNAL_ERROR"),
}
_START_TIME = 1_700_000_000_000
#: setup, execution and cleanup of a run that ended, in ms.
_DURATIONS = (1_000, 60_000, 500)


def recorded_run(
    *,
    host: str,
    job_id: int,
    run_id: int,
    run_name: str,
    notebook_path: str,
    life_cycle_state: str = "PENDING",
    result_state: str | None = None,
    state_message: str | None = None,
) -> dict[str, Any]:
    """``GET /api/2.2/jobs/runs/get`` for a one-time (``SUBMIT_RUN``) run of one notebook task.

    One-time runs belong to an anonymous job, whose id the response carries. A run that
    ended (``TERMINATED`` with a ``result_state``, ``SKIPPED``, ``INTERNAL_ERROR``) has
    its end time, durations and termination details, as the API reports them; its task
    ended the same way. ``status`` always agrees with ``state``.
    """
    ended = life_cycle_state in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
    if life_cycle_state == "TERMINATED" and result_state is None:
        msg = "a TERMINATED run has a result_state (SUCCESS, FAILED, ...)"
        raise ValueError(msg)
    if state_message is None:
        state_message = {"PENDING": "Waiting for cluster", "QUEUED": "Queued"}.get(life_cycle_state, "")
    state: dict[str, Any] = {
        "life_cycle_state": life_cycle_state,
        "state_message": state_message,
        "user_cancelled_or_timedout": result_state in ("CANCELED", "TIMEDOUT"),
        "queue_reason": "",
    }
    status: dict[str, Any] = {"state": STATUS_OF_LIFE_CYCLE[life_cycle_state]}
    times: dict[str, Any] = {"start_time": _START_TIME, "end_time": 0}
    if ended:
        outcome = result_state or life_cycle_state
        state["result_state"] = result_state
        code, kind = _TERMINATION.get(outcome, ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"))
        status["termination_details"] = {"code": code, "type": kind, "message": state_message}
        setup, execution, cleanup = _DURATIONS
        times = {
            "start_time": _START_TIME,
            "end_time": _START_TIME + setup + execution + cleanup,
            "setup_duration": setup,
            "execution_duration": execution,
            "cleanup_duration": cleanup,
            "run_duration": setup + execution + cleanup,
        }
    return {
        "job_id": job_id,
        "run_id": run_id,
        "creator_user_name": "dara@example.com",
        "number_in_job": run_id,
        "original_attempt_run_id": run_id,
        "state": state,
        "status": status,
        "tasks": [
            {
                "run_id": run_id + 1,
                "task_key": "notebook",
                "notebook_task": {"notebook_path": notebook_path, "source": "WORKSPACE"},
                "state": dict(state),
                "status": dict(status),
                "run_page_url": f"{host}/?o={WORKSPACE_ID}#job/{job_id}/run/{run_id + 1}",
                "attempt_number": 0,
                **times,
            }
        ],
        **times,
        "trigger": "ONE_TIME",
        "run_name": run_name,
        "run_page_url": f"{host}/?o={WORKSPACE_ID}#job/{job_id}/run/{run_id}",
        "run_type": "SUBMIT_RUN",
    }


def recorded_statement(
    statement_id: str,
    state: str,
    *,
    columns: list[tuple[str, str]] | None = None,
    rows: list[list[str | None]] | None = None,
    error: tuple[str, str] | None = None,
    chunk_rows: list[int] | None = None,
) -> dict[str, Any]:
    """``POST /api/2.0/sql/statements`` and ``GET .../statements/{id}``.

    ``columns`` are ``(name, type_name)``; ``rows`` are the first chunk's
    ``data_array`` (JSON_ARRAY values are always strings or null); ``chunk_rows`` the
    row counts of all chunks when the result has more than one; ``error`` is
    ``(error_code, message)`` for a FAILED statement.
    """
    response: dict[str, Any] = {"statement_id": statement_id, "status": {"state": state}}
    if error is not None:
        response["status"]["error"] = {"error_code": error[0], "message": error[1]}
    if state != "SUCCEEDED":
        return response
    columns = columns or []
    rows = rows or []
    chunk_rows = chunk_rows or [len(rows)]
    offsets = [sum(chunk_rows[:i]) for i in range(len(chunk_rows))]
    response["manifest"] = {
        "format": "JSON_ARRAY",
        "schema": {
            "column_count": len(columns),
            "columns": [
                {
                    "name": name,
                    "type_text": _TYPE_TEXT.get(type_name, type_name),
                    "type_name": type_name,
                    "position": position,
                }
                for position, (name, type_name) in enumerate(columns)
            ],
        },
        "total_chunk_count": len(chunk_rows),
        "chunks": [
            {"chunk_index": i, "row_offset": offsets[i], "row_count": count} for i, count in enumerate(chunk_rows)
        ],
        "total_row_count": sum(chunk_rows),
        "truncated": False,
    }
    response["result"] = recorded_chunk(0, 0, rows, has_next=len(chunk_rows) > 1)
    return response


def recorded_chunk(
    chunk_index: int, row_offset: int, rows: list[list[str | None]], *, has_next: bool
) -> dict[str, Any]:
    """``GET /api/2.0/sql/statements/{id}/result/chunks/{n}`` (and the inline first chunk)."""
    chunk: dict[str, Any] = {
        "chunk_index": chunk_index,
        "row_offset": row_offset,
        "row_count": len(rows),
        "data_array": rows,
    }
    if has_next:
        chunk["next_chunk_index"] = chunk_index + 1
        chunk["next_chunk_internal_link"] = f"/api/2.0/sql/statements/x/result/chunks/{chunk_index + 1}"
    return chunk


_TYPE_TEXT = {
    "LONG": "BIGINT",
    "INT": "INT",
    "STRING": "STRING",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DECIMAL": "DECIMAL(10,2)",
    "DATE": "DATE",
}


def recorded_start_update(update_id: str) -> dict[str, Any]:
    """``POST /api/2.0/pipelines/{pipeline_id}/updates``."""
    return {"update_id": update_id}


def recorded_update(pipeline_id: str, update_id: str, state: str) -> dict[str, Any]:
    """``GET /api/2.0/pipelines/{pipeline_id}/updates/{update_id}``."""
    return {
        "update": {
            "pipeline_id": pipeline_id,
            "update_id": update_id,
            "config": {
                "id": pipeline_id,
                "name": "dara-pipeline",
                "catalog": "main",
                "schema": "default",
                "serverless": True,
                "continuous": False,
                "development": False,
                "channel": "CURRENT",
                "libraries": [{"notebook": {"path": "/Workspace/Shared/dara/etl"}}],
            },
            "cause": "API_CALL",
            "state": state,
            "creation_time": 1_700_000_000_000,
            "full_refresh": False,
            "validate_only": False,
        }
    }


def recorded_pipeline_event(
    pipeline_id: str, update_id: str, *, level: str, message: str, error: str | None = None
) -> dict[str, Any]:
    """One item of ``GET /api/2.0/pipelines/{pipeline_id}/events``' ``events``."""
    event: dict[str, Any] = {
        "id": f"event-{abs(hash((update_id, message))) % 10**8}",
        "sequence": {"data_plane_id": {"instance": "execution", "seq_no": 1}},
        "origin": {
            "cloud": "AWS",
            "region": "us-west-2",
            "org_id": int(WORKSPACE_ID),
            "pipeline_id": pipeline_id,
            "pipeline_name": "dara-pipeline",
            "update_id": update_id,
        },
        "timestamp": "2024-11-24T00:00:00.000Z",
        "message": message,
        "level": level,
        "maturity_level": "STABLE",
        "event_type": "update_progress",
    }
    if error is not None:
        event["error"] = {
            "exceptions": [{"class_name": "org.apache.spark.sql.AnalysisException", "message": error}],
            "fatal": True,
        }
    return event
