"""Which runs exist, newest first: the one question Resonate's API cannot answer everywhere.

A run is a root promise (its id is its own ``resonate:origin``). Listing them takes
``promise.search``, which the Resonate server answers, the SDK's in-process server
does not have, and resonate-pg answers 501. So each backend gets an index of its own,
all behind one small seam, :class:`RunIndex`: a page of root promise ids, newest
first, and an opaque cursor for the next page. Reading each run stays the SDK's
(``app.services.run_status.read_run``), so a listed run reads the same as ``GET /runs/{id}``.

- :class:`InProcessRunIndex` reads the in-process server's table (it dies with it), and
  purges it (:meth:`~app.durable.in_process.InProcessServer.purge_runs`).
- :class:`PostgresRunIndex` asks resonate-pg's ``resonate.promises`` table with SQL,
  keyset-paged by ``(created_at, id)``, over the backend's own connection pool.
- :class:`SearchRunIndex` pages through ``promise.search`` (the Resonate server).
"""

from __future__ import annotations

from typing import Any, Protocol

from resonate.error import ServerError
from resonate.resonate import Resonate

from app.durable.in_process import InProcessServer
from app.durable.resonate_format import SCOPE, is_root_id


class BadCursor(ValueError):
    """A cursor this index did not issue."""

    def __init__(self, cursor: str) -> None:
        super().__init__(f"cursor {cursor[:64]!r} is not one this server issued; start without one")


class RunIndex(Protocol):
    async def page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """Up to ``limit`` root promise ids, newest first, after ``cursor``; and the next cursor."""
        ...

    async def purge(self, settled_before_ms: int) -> int:
        """Delete runs that ended before then (and nothing of theirs is pending); how many."""
        ...

    async def close(self) -> None: ...


class InProcessRunIndex:
    def __init__(self, server: InProcessServer) -> None:
        self._server = server

    async def page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        if cursor is not None and not cursor.isdigit():
            raise BadCursor(cursor)
        roots = sorted(
            (p for p in self._server.stored_promises() if is_root_id(p.id)),
            key=lambda p: (p.created_at, p.id),
            reverse=True,
        )
        start = int(cursor or 0)
        end = start + limit
        return [p.id for p in roots[start:end]], str(end) if end < len(roots) else None

    async def purge(self, settled_before_ms: int) -> int:
        # Nothing survives the process, but a long-lived one would keep every run it ran.
        return self._server.purge_runs(settled_before_ms)

    async def close(self) -> None:
        return None


class PostgresRunIndex:
    """Root promises from resonate-pg's table, on the backend's own pool (``PoolSessions``:
    bounded, and failing fast while the database is down, so a listing then is a quick 503)."""

    _QUERY = (
        "SELECT id, created_at FROM resonate.promises "
        "WHERE origin_id = id AND strpos(id, ':') = 0 AND (%(after)s::bigint IS NULL OR (created_at, id) < (%(after)s, %(after_id)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    )

    #: Runs that ended before the cutoff with nothing of theirs still pending (a watcher's
    #: last look), a batch at a time; their steps, waits and watchers share the origin.
    _PURGE = (
        "WITH old AS (SELECT r.id FROM resonate.promises r "
        "WHERE r.origin_id = r.id AND r.state <> 'pending' AND r.settled_at < %(before)s "
        "AND NOT EXISTS (SELECT 1 FROM resonate.promises p WHERE p.origin_id = r.id AND p.state = 'pending') "
        "LIMIT 500) "
        "DELETE FROM resonate.promises WHERE origin_id IN (SELECT id FROM old) RETURNING (id = origin_id)"
    )

    def __init__(self, sessions: Any) -> None:
        #: resonate-pg's ``PgSessions``: ``session()`` lends a connection, in a transaction.
        self._sessions = sessions

    async def purge(self, settled_before_ms: int) -> int:
        runs = 0
        while True:  # a transaction per batch: locks are held for one batch only
            async with self._sessions.session() as conn:
                deleted = await (await conn.execute(self._PURGE, {"before": settled_before_ms})).fetchall()
            if not deleted:
                return runs
            runs += sum(1 for (root,) in deleted if root)

    async def page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        import psycopg  # resonate-pg's driver: present wherever that backend is

        after, after_id = self._parse(cursor)
        try:
            async with self._sessions.session() as conn:
                rows = await (
                    await conn.execute(self._QUERY, {"after": after, "after_id": after_id, "limit": limit + 1})
                ).fetchall()
        except psycopg.Error as exc:  # the service's 503 for a backend that is down
            from app.durable.postgres_backend import describe  # says no host or socket path

            raise ServerError(503, f"Postgres did not answer the run listing: {describe(exc)}") from None
        ids = [row[0] for row in rows[:limit]]
        more = len(rows) > limit
        return ids, f"{rows[limit - 1][1]}.{rows[limit - 1][0]}" if more else None

    @staticmethod
    def _parse(cursor: str | None) -> tuple[int | None, str | None]:
        if cursor is None:
            return None, None
        created, dot, run_id = cursor.partition(".")
        if not dot or not created.isdigit() or len(created) > 18 or not run_id:  # a bigint
            raise BadCursor(cursor)
        return int(created), run_id

    async def close(self) -> None:
        return None


class SearchRunIndex:
    """``promise.search`` over global promises (the Resonate server), roots only."""

    def __init__(self, resonate: Resonate) -> None:
        self._resonate = resonate

    async def page(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        found = await self._resonate.promises.search(None, {SCOPE: "global"}, limit, cursor)
        return [p.id for p in found.promises if is_root_id(p.id)], found.cursor

    async def purge(self, settled_before_ms: int) -> int:
        return 0  # the Resonate server keeps its own records; see its retention settings

    async def close(self) -> None:
        return None
