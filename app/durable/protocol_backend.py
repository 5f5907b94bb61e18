"""The Resonate server's read and settle requests, answered by DARA's own backends.

Operators inspect runs with the ``resonate`` CLI, which speaks the Resonate server's
protocol. DARA's in-process server and resonate-pg speak most of it already, through
the connection the SDK uses (``Network.send``); :class:`ProtocolBackend` sends them
the four requests an operator needs and answers as the server v0.9.8 would:

- ``promise.get`` and ``promise.settle``: sent to the backend as they are;
- ``task.get``: sent to resonate-pg; the in-process server has no such request, so
  its task table is read here;
- ``promise.search``: neither has it (``app.durable.promise_search``).

Records come back in the server's shape (``server_record``), and a refusal as the
server words it: a message string, not the backends' ``{"error": ...}`` or ``"not
found"``. Which requests may be made at all, and by whom, is the caller's business
(``app.resonate_protocol``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

from resonate_base.connections import Network

from app.durable.in_process import InProcessServer
from app.durable.promise_search import (
    InProcessPromiseSearch,
    PostgresPromiseSearch,
    PromiseSearch,
    SearchQuery,
    server_record,
)

#: The protocol version the server speaks, and the only one the CLI sends.
PROTOCOL_VERSION = "2026-04-01"


class Reply(NamedTuple):
    """The ``status`` and ``data`` of the server's answer."""

    status: int
    data: Any


class ProtocolBackend:
    def __init__(self, network: Network, search: PromiseSearch, local: InProcessServer | None = None) -> None:
        self._network = network
        self._search = search
        #: The in-process server, whose tasks are read here; None on Postgres.
        self._local = local

    @classmethod
    def of(cls, network: Network | None, local: InProcessServer | None) -> ProtocolBackend | None:
        """The backend behind ``network``; None for the Resonate server, which answers itself."""
        if local is not None:
            return cls(local, InProcessPromiseSearch(local), local)
        sessions = getattr(network, "sessions", None)  # app.durable.postgres_backend.PostgresBackend
        if network is not None and sessions is not None:
            return cls(network, PostgresPromiseSearch(sessions))
        return None

    async def get(self, promise_id: str) -> Reply:
        status, data = await self._send("promise.get", {"id": promise_id})
        if status == 200:
            return Reply(200, {"promise": server_record(data["promise"])})
        return _refused(status, data, f"Promise not found: {promise_id!r}")

    async def settle(self, promise_id: str, state: str, value: dict[str, Any]) -> Reply:
        status, data = await self._send("promise.settle", {"id": promise_id, "state": state, "value": value})
        if status == 200:
            return Reply(200, {"promise": server_record(data["promise"])})
        return _refused(status, data, f"Promise not found: {promise_id!r}")

    async def task(self, task_id: str) -> Reply:
        if self._local is not None:
            return self._local_task(task_id)
        status, data = await self._send("task.get", {"id": task_id})
        if status == 200:
            return Reply(200, {"task": _server_task(data["task"])})
        return _refused(status, data, f"Task not found: {task_id!r}")

    async def search(self, query: SearchQuery) -> Reply:
        return Reply(200, (await self._search.search(query)).as_data())

    def _local_task(self, task_id: str) -> Reply:
        record = self._local.task_record(task_id) if self._local is not None else None
        if record is None:
            return Reply(404, f"Task not found: {task_id!r}")
        return Reply(200, {"task": _server_task(record)})

    async def _send(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        request = {
            "kind": kind,
            "head": {"corrId": f"dara-{uuid.uuid4().hex}", "version": PROTOCOL_VERSION},
            "data": data,
        }
        answer = json.loads(await self._network.send(json.dumps(request)))
        return int(answer["head"]["status"]), answer.get("data")


def _server_task(record: dict[str, Any]) -> dict[str, Any]:
    """A task as the server writes it: ``id, state, version, resumes``, and ``ttl``/``pid`` if held."""
    out = {key: record.get(key) for key in ("id", "state", "version")}
    out["resumes"] = int(record.get("resumes") or 0)
    out.update({key: record[key] for key in ("ttl", "pid") if record.get(key) is not None})
    return out


def _refused(status: int, data: Any, not_found: str) -> Reply:
    """A backend's refusal, worded as the server's (a string the CLI prints)."""
    if status == 404:
        return Reply(404, not_found)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return Reply(status, data["error"])
    return Reply(status, data if isinstance(data, str) else f"the backend answered {status}")
