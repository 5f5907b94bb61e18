"""How resonate-sdk stores a run, known in one place: DARA's adapter to it.

DARA keeps no store of its own: a run's status is read back from its promises
(app.services.run_status), and waits are settled from outside (app.services.settling,
app.watchers). Both rely on choices the SDK makes without publishing them as API:

- **ids**: a run's root promise has the run's id; the n-th durable call of its body
  is ``<run>:<n>``; a detached call made at position ``<run>:<n>`` is stored under
  ``<run>:d<blake2b-8 of "<run>:<n>">`` (``resonate.context.Context.detached``);
- **tags**: which run a promise belongs to (``resonate:origin``) and which operation
  made it (``resonate:scope``, ``resonate:timer``, ``resonate:external``);
- **calls**: a root or detached promise's param is the call ``{func, args, kwargs, version}``;
- **error values**: a rejection is stored as ``{"__type": "error", "message": ...}``
  (``resonate.codec._encode_error``), which its awaiter raises as ``ApplicationError``;
- **future ids**: a promise's id is minted when the call is made, but only the private
  ``ResonateFuture._id`` gives it without waiting for the create;
- **absent promises**: ``promises.get`` of an id the backend has none by raises
  ``ServerError`` with code 404 (:func:`get_promise` makes that None);
- **the wire**: a run is created by a ``task.create`` request whose reply carries the
  run's root promise as stored, encoded (:func:`task_create_id`, :func:`created_root`);
- **value headers**: a settle's value carries headers the backends store with it and
  return with the record, and the SDK's decoder ignores; a settle takes no idempotency
  key, and one that found the promise settled is answered as the winner is. So
  :func:`settle_once` writes a key of its own there to learn whether its write was kept
  (``Promises.resolve`` drops headers: it goes through the SDK's sender and codec).

The in-process server (app.durable.in_process) is the other half of the adapter: it
subclasses the SDK's private server state, and is the only other module that imports
private SDK names. tests/test_resonate_adapter.py checks both halves against the
installed SDK, so an upgrade that changes any of this fails there, by name, instead of
as a wrong ``GET /runs``.

**What would let DARA drop this module**: resonate-sdk publishing, as API, the id of a
durable call (``ResonateFuture.id`` readable at once, and a ``resonate.ids`` function
for a detached call's id), a promise's kind and origin on ``PromiseRecord``, an error
codec for values settled from outside (``encode_error(message)``), and an in-process
server meant for production (indexed, timing out waits, with ``promise.search`` and a
retention hook) instead of the test double ``resonate.connections.local``.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Literal, NamedTuple

import msgspec
from resonate.context import ResonateFuture
from resonate.core import SettleState
from resonate.error import ServerError
from resonate.ids import join_id, origin_of
from resonate.promises import Promises
from resonate.resonate import Resonate
from resonate.transport import ResponseHead
from resonate.types import PromiseRecord, PromiseSettleReq, Value

#: The run a promise belongs to: its root promise's id (the root's own id on a root).
ORIGIN = "resonate:origin"
#: The promise whose task replays this one (``preload`` sends a branch's promises along).
BRANCH = "resonate:branch"
PARENT = "resonate:parent"
#: ``local`` for a step (``ctx.run``), ``global`` for everything another process may settle.
SCOPE = "resonate:scope"
#: Set on a promise the server dispatches as a task (and times out itself).
TARGET = "resonate:target"
#: ``"true"`` on a durable sleep (``ctx.sleep``).
TIMER = "resonate:timer"
#: ``"true"`` on a promise settled from outside (``ctx.promise``): a callback wait.
EXTERNAL = "resonate:external"

#: The SDK operation that made a promise.
MadeBy = Literal["run", "promise", "sleep", "call"]


class StoredCall(NamedTuple):
    """The durable call a root or detached promise holds (what the SDK's ``TaskData`` stores)."""

    func: Any
    args: list[Any]
    kwargs: dict[str, Any]


def child_id(run_id: str, position: int) -> str:
    """The id of the ``position``-th (from 1) durable call of run ``run_id``'s body."""
    return join_id(run_id, str(position))


def run_of(promise_id: str) -> str:
    """The run (root promise id) that ``promise_id`` belongs to."""
    return origin_of(promise_id)


def is_root_id(promise_id: str) -> bool:
    """Whether ``promise_id`` names a root promise (a run) rather than one of its calls."""
    return run_of(promise_id) == promise_id


def detached_id(position_id: str) -> str:
    """Where a detached call made at ``position_id`` (``<run>:<n>``) is stored."""
    digest = hashlib.blake2b(position_id.encode(), digest_size=8).hexdigest()
    return join_id(run_of(position_id), f"d{digest}")


def origin(record: PromiseRecord) -> str | None:
    """The run ``record`` belongs to, as its tags say; None when they do not."""
    return record.tags.get(ORIGIN)


def is_root(record: PromiseRecord) -> bool:
    """Whether ``record`` is the root promise of a run (it is its own origin)."""
    return origin(record) == record.id


def made_by(record: PromiseRecord) -> MadeBy:
    """Which operation made ``record``: ``ctx.run`` (a step), ``ctx.promise`` (a wait
    settled from outside), ``ctx.sleep``, or a call another worker runs (rpc, detached)."""
    tags = record.tags
    if tags.get(TIMER) == "true":
        return "sleep"
    if tags.get(EXTERNAL) == "true":
        return "promise"
    if tags.get(SCOPE) == "local":
        return "run"
    return "call"


def stored_call(record: PromiseRecord) -> StoredCall | None:
    """The call ``record`` holds; None for a step, a wait or a sleep, whose param holds none."""
    data = record.param.data
    if not isinstance(data, dict) or "func" not in data:
        return None
    args, kwargs = data.get("args") or [], data.get("kwargs") or {}
    return StoredCall(
        data["func"], list(args) if isinstance(args, list) else [], kwargs if isinstance(kwargs, dict) else {}
    )


def error_value(message: str) -> dict[str, str]:
    """A rejection's value as the SDK stores one: whoever awaits it raises ``message``."""
    return {"__type": "error", "message": message}


def rejection(message: str) -> Value:
    """:func:`error_value` ready to pass to ``promises.reject`` or ``promises.cancel``."""
    return Value(data=error_value(message))


def error_message(data: Any) -> str:
    """The message of a rejected promise's stored value (the value as text if it has none)."""
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else str(data)


async def get_promise(resonate: Resonate, promise_id: str) -> PromiseRecord | None:
    """The promise, or None if the backend has none by that id; any other failure raises."""
    try:
        return await resonate.promises.get(promise_id)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise


def future_id(future: ResonateFuture[Any]) -> str:
    """The promise id of a durable call, known as soon as the call is made.

    ``ResonateFuture.id()`` waits for the promise to be created; a pipeline that needs
    the id at once (to set up a watchdog beside it) reads it here.
    """
    return future._id


class _Id(msgspec.Struct):
    id: str = ""


class _CreateAction(msgspec.Struct):
    data: _Id = msgspec.field(default_factory=_Id)


class _TaskCreateData(msgspec.Struct):
    action: _CreateAction = msgspec.field(default_factory=_CreateAction)


class _TaskCreateRequest(msgspec.Struct):
    kind: str = ""
    data: _TaskCreateData = msgspec.field(default_factory=_TaskCreateData)


class _CreatedData(msgspec.Struct):
    promise: PromiseRecord | None = None


class _TaskCreateReply(msgspec.Struct):
    head: ResponseHead = msgspec.field(default_factory=ResponseHead)
    data: _CreatedData | str | None = None


_request = msgspec.json.Decoder(_TaskCreateRequest)
_reply = msgspec.json.Decoder(_TaskCreateReply)


def task_create_id(request: str) -> str | None:
    """The id of the promise a wire request creates with its task (a run), else None.

    Cheap for every other request: only a ``task.create`` is decoded.
    """
    if '"task.create"' not in request:
        return None
    try:
        decoded = _request.decode(request)
    except msgspec.DecodeError:
        return None
    return decoded.data.action.data.id or None if decoded.kind == "task.create" else None


def created_root(reply: str, resonate: Resonate) -> PromiseRecord | None:
    """The root promise a ``task.create`` reply carries, decoded as ``promises.get``
    returns it; None for a refusal (a 409 carries no promise) or a reply not understood.
    """
    try:
        decoded = _reply.decode(reply)
    except msgspec.DecodeError:
        return None
    if decoded.head.status != 200 or not isinstance(decoded.data, _CreatedData) or decoded.data.promise is None:
        return None
    return resonate.promises.codec.decode_promise(decoded.data.promise)


#: The value header naming the settle call whose write is stored.
SETTLED_BY = "dara:settled-by"


class Settled(NamedTuple):
    """The promise as the settle left it (its value decoded), and whether this call wrote it."""

    record: PromiseRecord
    won: bool


async def settle_once(promises: Promises, promise_id: str, state: SettleState, data: Any) -> Settled:
    """Settle ``promise_id`` as ``state`` with ``data``, as ``promises.resolve`` or
    ``reject`` would, and say whether this call's write is the one Resonate kept."""
    key = uuid.uuid4().hex
    value = Value(headers={SETTLED_BY: key}, data=promises.codec.encode(data).data)
    stored = await promises.sender.promise_settle(PromiseSettleReq(id=promise_id, state=state, value=value))
    record = promises.codec.decode_promise(stored)
    return Settled(record, (record.value.headers or {}).get(SETTLED_BY) == key)
