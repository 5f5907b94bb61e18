"""Caps on what a request may carry, enforced before anything parses it.

- **Body size**, ``DARA_MAX_VALUE_BYTES``: 413, whether the size is declared
  (``Content-Length``) or only seen as the body streams in (chunked).
- **JSON nesting**, ``DARA_MAX_JSON_DEPTH``: 422 for a JSON body whose arrays and
  objects nest deeper. Without it, Python's parser recurses until it gives up, and a
  value a few hundred levels deep is accepted, stored, and then cannot be serialised
  back by ``GET /runs/{id}``. :func:`check_json_depth` applies the same cap to JSON
  that travels outside a JSON body: a query parameter, a form field.
- **Unpaired surrogates**: 422 for JSON whose strings escape half a UTF-16 surrogate
  pair (``"\\ud800"``). Python's parser accepts it, but the string is not Unicode: it
  cannot be encoded to be stored, and the Resonate backend would fail on it (a 503).
  Checked in every JSON body, and by :func:`check_json_depth` too.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A JSON string, escapes included; what is left once these are removed is structure.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


#: One entry of FastAPI's own validation errors (``detail`` of a request it cannot parse).
_FIELD_ERROR = {
    "type": "object",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
        "input": {},
        "ctx": {"type": "object"},
    },
    "required": ["loc", "msg", "type"],
}
#: Every 4xx body: ``{"detail": ...}``, a message that says what to fix, FastAPI's list
#: of field errors, or a structured report (a task graph's problems).
ERROR_BODY = {
    "title": "Error",
    "type": "object",
    "properties": {
        "detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": _FIELD_ERROR}, {"type": "object"}]}
    },
    "required": ["detail"],
}


def error_response(description: str) -> dict[str, object]:
    """An OpenAPI response of JSON ``ERROR_BODY`` (also on routers whose default is HTML)."""
    return {"description": description, "content": {"application/json": {"schema": ERROR_BODY}}}


#: What these limits (and FastAPI's own validation) answer, declared on every route:
#: any request may carry a body, and the limits apply before routing.
LIMIT_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {
        "description": "The HTTP server could not read the request, e.g. a URL or headers over its "
        "size limit, before DARA saw it (plain text); or the request addressed a host DARA does not "
        "answer to, which DARA_ALLOWED_HOSTS can add (JSON).",
        "content": {"application/json": {"schema": ERROR_BODY}, "text/plain": {"schema": {"type": "string"}}},
    },
    413: error_response("The request body is over DARA_MAX_VALUE_BYTES."),
    422: error_response(
        "The request is invalid: a field (FastAPI's list of errors), a JSON body nested deeper "
        "than DARA_MAX_JSON_DEPTH or with an unpaired surrogate, or a value the route refuses "
        "(a message saying what to fix)."
    ),
}


#: Most bytes of a refused body read (and dropped) so that the client gets to read the 413.
DRAIN_LIMIT = 64 << 20


class BodyTooLarge(Exception):
    def __init__(self, more: bool = True) -> None:
        super().__init__()
        #: Whether the client has more of the body to send.
        self.more = more


class _Disconnected(Exception):
    pass


def json_depth(data: bytes | str) -> int:
    """How deep the arrays and objects in JSON text nest (``[]``/``{}``: 1; a scalar: 0).

    A scan, not a parse: it never recurses, and it runs at C speed over the text.
    Brackets inside strings do not count. On text that is not JSON it gives a number
    all the same, which is harmless: the parser refuses that text afterwards anyway.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if b"[" not in data and b"{" not in data:
        return 0
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def too_deep(data: bytes | str, max_depth: int) -> int | None:
    """The nesting depth of ``data`` if it is over ``max_depth``, else None (cheaply, mostly)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= max_depth:  # cannot nest deeper than it has brackets
        return None
    depth = json_depth(raw)
    return depth if depth > max_depth else None


def depth_message(what: str, depth: int, max_depth: int) -> str:
    return (
        f"{what}: JSON nested {depth} levels deep, over the limit of {max_depth} "
        "(DARA_MAX_JSON_DEPTH); flatten it or raise the setting"
    )


def check_json_depth(text: str | bytes | None, max_depth: int, what: str) -> None:
    """422 if JSON text nests deeper than ``max_depth``, or holds an unpaired surrogate;
    for JSON outside a request body."""
    if text is None:
        return
    depth = too_deep(text, max_depth)
    if depth is not None:
        raise HTTPException(422, depth_message(what, depth, max_depth))
    if (surrogate := unpaired_surrogate(text)) is not None:
        raise HTTPException(422, surrogate_message(what, surrogate))


#: A JSON escape: a surrogate pair, a lone surrogate (group 1), or any other.
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def unpaired_surrogate(text: str | bytes) -> str | None:
    """The first unpaired surrogate in JSON text, escaped (``\\ud800``) or raw, or None.

    Scans the escapes left to right, so an escaped backslash (``\\\\ud800``) is not
    mistaken for one; a pair (high then low) is a character, as JSON means it.
    """
    if isinstance(text, str):
        if raw := _SURROGATE.search(text):
            return f"\\u{ord(raw.group()):04x}"
        text = text.encode("utf-8")
    if _SURROGATE_ESCAPE.search(text) is None:  # the common case: nothing to look at
        return None
    for escape in _ESCAPE.finditer(text):
        if escape[1] is not None:
            return "\\" + escape[1].decode().lower()
    return None


def surrogate_message(what: str, surrogate: str) -> str:
    return (
        f"{what}: a string holds the unpaired surrogate {surrogate}, which is not valid Unicode; "
        "send whole characters (one beyond U+FFFF as a high and a low surrogate together)"
    )


def is_json_body(content_type: bytes | None) -> bool:
    """Whether FastAPI would parse a body with this Content-Type as JSON (it does without one)."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    maintype, _, subtype = media.partition(b"/")
    return maintype == b"application" and (subtype == b"json" or subtype.endswith(b"+json"))


class BodyLimit:
    """Answer 413 to a body over ``max_bytes``, declared or streamed, and 422 to a JSON
    body nested deeper than ``max_json_depth``.

    A JSON body is read whole first (it is at most ``max_bytes``), checked, and then
    handed on; any other body (multipart uploads) streams through, counted as it goes.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_depth: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            if declared.isdigit() and int(declared) <= DRAIN_LIMIT:
                await _drain(receive)
            await self._too_large(send)
            return
        if self.max_json_depth is not None and is_json_body(headers.get(b"content-type")):
            await self._checked_json(scope, receive, send, self.max_json_depth)
        else:
            await self._streamed(scope, receive, send)

    async def _checked_json(self, scope: Scope, receive: Receive, send: Send, max_depth: int) -> None:
        try:
            body = await self._read(receive)
        except BodyTooLarge as refused:
            if refused.more:
                await _drain(receive)
            await self._too_large(send)
            return
        except _Disconnected:
            return  # nobody is left to answer
        try:
            utf8 = _as_utf8(body)
        except UnicodeDecodeError as exc:  # FastAPI would answer "400 There was an error parsing the body"
            detail = f"request body: not valid {exc.encoding} at byte {exc.start}; send JSON encoded as UTF-8"
            await _answer(send, 422, detail)
            return
        depth = too_deep(utf8, max_depth)
        if depth is not None:
            await _answer(send, 422, depth_message("request body", depth, max_depth))
            return
        if (surrogate := unpaired_surrogate(utf8)) is not None:
            await _answer(send, 422, surrogate_message("request body", surrogate))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect, for a handler that listens
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise BodyTooLarge(more=message.get("more_body", False))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        overflow = False
        more = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, overflow, more
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                overflow, more = True, message.get("more_body", False)
                raise BodyTooLarge(more=more)
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body overflowed, whatever the app makes of the exception (FastAPI
            # answers "400 There was an error parsing the body") is replaced by the 413.
            nonlocal started
            if overflow:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            if more:
                await _drain(receive)
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        detail = f"request body over {self.max_bytes} bytes (DARA_MAX_VALUE_BYTES); send less or raise the setting"
        await _answer(send, 413, detail)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body (up to :data:`DRAIN_LIMIT` bytes).

    Answering while the client is still sending makes the server close a connection
    with unread data, and the client sees a reset instead of the 413: the notebook's
    callback cell took that for an outage and retried for ten minutes. Read to the end,
    the client reads DARA's answer and can say why. DARA_CLIENT_TIMEOUT bounds a slow one.
    """
    drained = 0
    while drained <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


def _as_utf8(body: bytes) -> bytes:
    """A JSON body as UTF-8, the encoding the depth scan reads (JSON may come as UTF-16/32 too)."""
    encoding = json.detect_encoding(body)
    text = body.decode(encoding)  # UnicodeDecodeError: not text in the encoding it appears to be
    return body if encoding in ("utf-8", "utf-8-sig") else text.encode("utf-8", "surrogatepass")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
