"""``promise.search`` as the Resonate server answers it, on the backends that lack it.

The ``resonate`` CLI finds a run's promises with ``promise.search`` (``resonate tree``
pages through it), but the SDK's in-process server has no such request and
resonate-pg answers it 501. So DARA answers it from each backend's own records, the
way the Resonate server v0.9.8 does (``op_promise_search`` and its ``promise_search``
queries): promises whose state is ``state`` (its own names: ``pending``, ``resolved``,
``rejected``, ``rejected_canceled``, ``rejected_timedout``) and whose tags include
every pair of ``tags``, in id order, ``limit`` at a time; the cursor is the last id
of a page, and the next page starts after it. Records come out in the server's shape
(:func:`server_record`), the same as ``promise.get`` answers on that backend.

- :class:`InProcessPromiseSearch` reads the in-process server's table (as
  ``InProcessRunIndex`` does).
- :class:`PostgresPromiseSearch` asks resonate-pg's ``resonate.promises`` table with SQL
  (as ``PostgresRunIndex`` does), and renders each row with resonate-pg's own
  ``_promise_json``, so a record reads exactly as ``promise.get`` returns it there: a
  pending promise past its deadline already shows as timed out.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from resonate.error import ServerError

from app.durable.in_process import InProcessServer
from app.durable.resonate_format import BRANCH, ORIGIN

PromiseState = Literal["pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout"]

#: The server's default page, and the most it answers at once.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class SearchQuery:
    state: PromiseState | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


@dataclass(frozen=True)
class SearchPage:
    #: Promise records in the server's shape (:func:`server_record`), in id order.
    promises: list[dict[str, Any]]
    #: The last id of this page when more follow; None at the end.
    cursor: str | None

    def as_data(self) -> dict[str, Any]:
        """The ``data`` of the server's answer: ``cursor`` only when there is one."""
        return {"promises": self.promises, **({"cursor": self.cursor} if self.cursor is not None else {})}


class PromiseSearch(Protocol):
    async def search(self, query: SearchQuery) -> SearchPage: ...


def server_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A promise record as the Resonate server writes it, whichever backend stored it.

    The backends differ only in what they leave out: the in-process server keeps a
    pending value as ``null`` and a value's absent headers as ``null``; resonate-pg
    writes ``settledAt: null`` and empty headers. The server omits an absent field.
    """
    out: dict[str, Any] = {
        "id": record.get("id"),
        "state": record.get("state"),
        "param": _server_value(record.get("param")),
        "value": _server_value(record.get("value")),
        "tags": record.get("tags") or {},
        "timeoutAt": record.get("timeoutAt"),
        "createdAt": record.get("createdAt"),
    }
    if record.get("settledAt") is not None:
        out["settledAt"] = record["settledAt"]
    return out


def _server_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    return {key: value[key] for key in ("headers", "data") if value.get(key) is not None}


class InProcessPromiseSearch:
    """The in-process server's promises; a page costs one pass over them (it has no index by id)."""

    def __init__(self, server: InProcessServer) -> None:
        self._server = server

    async def search(self, query: SearchQuery) -> SearchPage:
        # No await from here on: the server's state cannot change under the pass.
        wanted = query.tags.items()
        found = heapq.nsmallest(
            query.limit + 1,
            (
                promise
                for promise in self._server.stored_promises()
                if (query.state is None or promise.state == query.state)
                and (query.cursor is None or promise.id > query.cursor)
                and wanted <= promise.tags.items()
            ),
            key=lambda promise: promise.id,
        )
        page = [server_record(promise.to_record()) for promise in found[: query.limit]]
        return SearchPage(page, page[-1]["id"] if len(found) > query.limit else None)


class PostgresPromiseSearch:
    """resonate-pg's promises, on the backend's own pool (``PoolSessions``: fails fast when down)."""

    #: Filtered on the state each record shows (``_promise_json``'s), and keyed by id as
    #: the server's query is. The origin and branch tags are matched on their indexed
    #: columns too, so a run's tree reads only that run's rows.
    _QUERY = """
        SELECT record::text FROM (
            SELECT p.id, resonate._promise_json(p, (extract(epoch from clock_timestamp()) * 1000)::bigint) AS record
            FROM resonate.promises p
            WHERE p.tags @> %(tags)s::jsonb
              AND (%(origin)s::text IS NULL OR p.origin_id = %(origin)s)
              AND (%(branch)s::text IS NULL OR p.branch_id = %(branch)s)
              AND (%(cursor)s::text IS NULL OR p.id > %(cursor)s)
        ) found
        WHERE %(state)s::text IS NULL OR record->>'state' = %(state)s
        ORDER BY id LIMIT %(limit)s
    """

    def __init__(self, sessions: Any) -> None:
        #: resonate-pg's ``PgSessions``: ``session()`` lends a connection.
        self._sessions = sessions

    async def search(self, query: SearchQuery) -> SearchPage:
        import psycopg  # resonate-pg's driver: present wherever this backend is

        params = {
            "tags": json.dumps(dict(query.tags)),
            "origin": query.tags.get(ORIGIN),
            "branch": query.tags.get(BRANCH),
            "cursor": query.cursor,
            "state": query.state,
            "limit": query.limit + 1,
        }
        try:
            async with self._sessions.session() as conn:
                rows = await (await conn.execute(self._QUERY, params)).fetchall()
        except psycopg.Error as exc:  # an outage: the caller's 503, not a 500
            from app.durable.postgres_backend import describe  # says no host or socket path

            raise ServerError(503, f"Postgres did not answer the search: {describe(exc)}") from None
        page = [server_record(json.loads(row[0])) for row in rows[: query.limit]]
        return SearchPage(page, page[-1]["id"] if len(rows) > query.limit else None)
