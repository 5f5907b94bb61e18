"""The Resonate protocol for operators: what DARA answers at ``/resonate/``, and what not.

The ``resonate`` CLI (``resonate tree``, ``resonate promises get|search|resolve``)
sends every command as one envelope, ``{kind, head: {corrId, version}, data}``, and
expects ``{kind, head: {corrId, status, version}, data}`` back, where ``data`` is the
answer or, for a status outside 2xx, a message it prints. DARA answers those of
them an operator needs, on its own backends (``app.durable.protocol_backend``):

- **reads**: ``promise.get``, ``promise.search`` and ``task.get``, as the Resonate
  server v0.9.8 answers them;
- **settling a run's callback wait** (``promise.settle``: the CLI's ``promises
  resolve``, ``reject`` and ``cancel``) under the rules of ``POST /resolve``
  (app.services.settling): only a wait (``ctx.promise()``), never a step, a watcher
  or the run itself, and each
  settle audit-logged. A resolved value must be JSON, as the SDK decodes it; a
  rejection becomes DARA's error record with the message sent, never a value the SDK
  would unpickle.

Every other kind (creating promises, task and schedule requests) is refused: runs
start and stop through DARA's API. Each refusal, and a malformed envelope, is an
envelope too, with a 4xx status and a message that says what to fix.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from resonate.error import ConnectorError, ResonateError, ServerError

from app.durable.promise_search import DEFAULT_LIMIT, MAX_LIMIT, PromiseState, SearchQuery
from app.durable.protocol_backend import PROTOCOL_VERSION, ProtocolBackend, Reply
from app.durable.resonate_format import error_value, origin, run_of
from app.limits import check_json_depth
from app.runtime import Runtime
from app.security import audit
from app.services.errors import NotAWait, PromiseNotFound
from app.services.settling import find_wait

logger = logging.getLogger(__name__)

READS = ("promise.get", "promise.search", "task.get")
SETTLE = "promise.settle"
#: The server's other kinds: refused here, with a reason, rather than called unknown.
REFUSED = frozenset(
    {
        "promise.create",
        "promise.register_callback",
        "promise.register_listener",
        "task.create",
        "task.acquire",
        "task.release",
        "task.fulfill",
        "task.suspend",
        "task.fence",
        "task.heartbeat",
        "task.halt",
        "task.continue",
        "task.search",
        "schedule.get",
        "schedule.create",
        "schedule.delete",
        "schedule.search",
        "debug.start",
        "debug.stop",
        "debug.reset",
        "debug.snap",
        "debug.tick",
    }
)
#: Longest rejection message, as for ``POST /reject``.
MAX_MESSAGE = 65536


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the server ignores fields it does not know


class Head(_Loose):
    corrId: StrictStr  # the protocol's names
    version: StrictStr
    auth: StrictStr | None = None


class Envelope(_Loose):
    """A request, as the CLI builds it (``build_envelope`` in the server's ``src/cli.rs``)."""

    kind: StrictStr
    head: Head
    data: Any = Field(description="An object; what it holds depends on the kind.")


class IdData(_Loose):
    id: StrictStr = Field(min_length=1)


class SearchData(_Loose):
    state: PromiseState | None = None
    tags: dict[StrictStr, StrictStr] | None = None
    limit: StrictInt | None = None
    cursor: StrictStr | None = None


class ValueData(_Loose):
    headers: dict[StrictStr, StrictStr] | None = None
    data: StrictStr | None = None


class SettleData(_Loose):
    id: StrictStr = Field(min_length=1)
    state: Literal["resolved", "rejected", "rejected_canceled"]
    value: ValueData = ValueData()


class Refusal(Exception):
    """A request DARA will not answer as asked: its status and a message that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def envelope(kind: str, corr_id: str, reply: Reply) -> dict[str, Any]:
    """An answer in the server's shape; its HTTP status is ``head.status``."""
    return {
        "kind": kind,
        "head": {"corrId": corr_id, "status": reply.status, "version": PROTOCOL_VERSION},
        "data": reply.data,
    }


def refusal(body: bytes, status: int, message: str, max_depth: int) -> dict[str, Any]:
    """A refusal for a request that may not even be an envelope: as the server does, it
    names the request's kind and corrId where it can read them."""
    kind, corr_id = "unknown", "0"
    try:
        raw = _parsed(body, max_depth)
    except Refusal:
        raw = None
    if isinstance(raw, dict):
        kind = raw["kind"] if isinstance(raw.get("kind"), str) else kind
        head = raw.get("head")
        corr_id = head["corrId"] if isinstance(head, dict) and isinstance(head.get("corrId"), str) else corr_id
    return envelope(kind, corr_id, Reply(status, message))


async def answer(runtime: Runtime, body: bytes, user: str) -> dict[str, Any]:
    """The answer to one request from ``user`` (already let in by the API token)."""
    max_depth = runtime.settings.max_json_depth
    try:
        request = _envelope(body, max_depth)
    except Refusal as refused:
        return refusal(body, refused.status, refused.message, max_depth)
    try:
        reply = await _dispatch(runtime, request, user)
    except Refusal as refused:
        reply = Reply(refused.status, refused.message)
    except ResonateError as exc:
        reply = _backend_failed(exc)
    return envelope(request.kind, request.head.corrId, reply)


def _parsed(body: bytes, max_depth: int) -> Any:
    """The body's JSON. Its depth and surrogates are checked again here: the body limit
    checks them only in a body sent as JSON, and the CLI's is, but another client's may not be."""
    try:
        text = body.decode()  # strictly: json.loads would let encoded surrogates through
        check_json_depth(text, max_depth, "request body")
    except UnicodeDecodeError as exc:
        raise Refusal(400, f"Invalid request envelope: not UTF-8 at byte {exc.start}; send JSON in UTF-8") from None
    except HTTPException as exc:
        raise Refusal(exc.status_code, str(exc.detail)) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Refusal(400, f"Invalid request envelope: the body is not JSON ({exc})") from None


def _envelope(body: bytes, max_depth: int) -> Envelope:
    raw = _parsed(body, max_depth)
    if not isinstance(raw, dict):
        raise Refusal(400, "Invalid request envelope: send a JSON object {kind, head: {corrId, version}, data}")
    try:
        request = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise Refusal(400, f"Invalid request envelope: {_errors(exc)}") from None
    if not request.kind:
        raise Refusal(400, "Missing or invalid 'kind' field — must be a non-empty string")
    if not isinstance(request.data, dict):
        raise Refusal(400, "Invalid 'data' field — must be an object")
    if request.head.version != PROTOCOL_VERSION:
        raise Refusal(
            400,
            f"Unsupported protocol version {request.head.version[:64]!r}, supported versions: [{PROTOCOL_VERSION!r}]",
        )
    if _holds_nul(request.data):  # Postgres cannot store it: refused here, not a 503 there
        raise Refusal(400, "Invalid request: a string in 'data' holds a NUL character (\\u0000); remove it")
    return request


async def _dispatch(runtime: Runtime, request: Envelope, user: str) -> Reply:
    kind = request.kind
    if kind in REFUSED:
        raise Refusal(
            403,
            f"{kind} is refused here: DARA's /resonate/ answers reads ({', '.join(READS)}) and settling "
            "a run's callback wait (promise.settle); start and cancel runs through DARA's API "
            "(POST /runs, POST /runs/{id}/cancel)",
        )
    if kind not in (*READS, SETTLE):
        raise Refusal(400, f"Unknown operation: {kind[:64]}")
    backend = ProtocolBackend.of(runtime.network, runtime.local_server)
    if backend is None:
        raise Refusal(
            404,
            "DARA runs on a Resonate server (RESONATE_URL): point the CLI at that server with -S; "
            "it answers these requests itself",
        )
    if kind == "promise.get":
        return await backend.get(_data(IdData, request).id)
    if kind == "task.get":
        return await backend.task(_data(IdData, request).id)
    if kind == "promise.search":
        return await backend.search(_query(_data(SearchData, request)))
    return await _settle(runtime, backend, _data(SettleData, request), user)


def _query(data: SearchData) -> SearchQuery:
    limit = DEFAULT_LIMIT if data.limit is None else data.limit
    if limit < 1:
        raise Refusal(400, "Limit must be a positive integer")
    if limit > MAX_LIMIT:
        raise Refusal(400, f"Invalid 'limit' — must be between 1 and {MAX_LIMIT}")
    return SearchQuery(state=data.state, tags=data.tags or {}, limit=limit, cursor=data.cursor)


async def _settle(runtime: Runtime, backend: ProtocolBackend, data: SettleData, user: str) -> Reply:
    value = _stored_value(data, user, runtime.settings.max_json_depth)  # what to fix first
    try:
        record = await find_wait(runtime, data.id)
    except PromiseNotFound:
        return Reply(404, f"Promise not found: {data.id!r}")
    except NotAWait as exc:
        what = "the run itself" if exc.kind == "run" else f"a {exc.kind} of run {exc.run_id!r}"
        audit(user, f"was refused settling {data.id!r} ({what}) in", exc.run_id)
        raise Refusal(
            403,
            f"{data.id!r} is {what}, not a wait (ctx.promise()); only a run's callback wait can be "
            "settled from outside",
        ) from None
    run_id = origin(record) or run_of(data.id)
    reply = await backend.settle(data.id, data.state, value)
    if reply.status == 200:
        settled = reply.data["promise"]
        if settled["state"] == data.state and settled["value"].get("data") == value["data"]:
            audit(user, f"{data.state} wait {data.id!r} with the resonate CLI in", run_id)
        else:  # settled before: the server answers with the promise as it is, and so does DARA
            audit(user, f"found wait {data.id!r} already {settled['state']} (not {data.state}) in", run_id)
    return reply


def _stored_value(data: SettleData, user: str, max_depth: int) -> dict[str, Any]:
    """The value to store: the resolved JSON, or DARA's error record with the message sent."""
    text = _decoded(data.value.data, max_depth)
    if data.state == "resolved":
        value: Any = None
        if text is not None:
            try:
                value = json.loads(text)
            except ValueError:
                raise Refusal(
                    400,
                    "value.data must be base64 of JSON, which the pipeline decodes: "
                    """--value '{"data":{"ok":true}}'; a JSON string needs its quotes: --value '{"data":"\\"ok\\""}'""",
                ) from None
    else:
        value = error_value(_message(text, data.state, user))
    # Encoded as the SDK encodes a value, whatever spacing it came with.
    text = None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    stored: dict[str, Any] = {"data": None if text is None else base64.b64encode(text.encode()).decode()}
    if data.value.headers is not None:
        stored["headers"] = data.value.headers
    return stored


def _decoded(data: str | None, max_depth: int) -> str | None:
    """``value.data`` as text (the CLI sends base64 of what ``--value`` held as ``data``)."""
    if data is None:
        return None
    try:
        text = base64.b64decode(data, validate=True).decode()
    except (binascii.Error, ValueError):
        raise Refusal(400, "value.data must be base64 of UTF-8 text, as the CLI encodes --value's data") from None
    try:
        check_json_depth(text, max_depth, "value.data")  # DARA_MAX_JSON_DEPTH, and no half surrogate pairs
    except HTTPException as exc:
        raise Refusal(422, str(exc.detail)) from None
    return text


def _message(text: str | None, state: str, user: str) -> str:
    """A rejection's message: a JSON string, ``{"message": ...}``, or the text as it came."""
    if text is None:
        return f"{'cancelled' if state == 'rejected_canceled' else 'rejected'} by {user} with the resonate CLI"
    try:
        sent = json.loads(text)
    except ValueError:
        sent = text
    if isinstance(sent, dict) and isinstance(sent.get("message"), str):
        sent = sent["message"]
    message = sent if isinstance(sent, str) else text
    if len(message) > MAX_MESSAGE:
        raise Refusal(400, f"the rejection's message is over {MAX_MESSAGE} characters; shorten it")
    return message


def _data[T: BaseModel](model: type[T], request: Envelope) -> T:
    try:
        return model.model_validate(request.data)
    except ValidationError as exc:
        raise Refusal(400, f"Invalid request: {_errors(exc)}") from None


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}" for error in exc.errors()[:5])


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _backend_failed(exc: ResonateError) -> Reply:
    logger.warning("Resonate backend failed a /resonate/ request: %s", exc)
    if isinstance(exc, ServerError) and 400 <= exc.code < 500:
        return Reply(exc.code, str(exc))
    if isinstance(exc, ConnectorError):  # the connection to it failed (e.g. Postgres is down)
        return Reply(503, f"the Resonate backend is unreachable: {exc.error}; try again shortly")
    return Reply(503, f"the Resonate backend failed: {exc}; try again shortly")
