"""One embedded workspace per shared database.

A Databricks run id means something only in the workspace that started it, and on a
shared backend any worker may run any run's watcher. Were each worker to start an
embedded workspace of its own, a watcher would look a run id up in the wrong one:
failing a run with another workspace's "run 1 ended SUCCESS", or waiting for ever on
a run queued in a dead worker's workspace. So workers on one database share one
workspace. A worker that starts the embedded workspace on Postgres holds a session
advisory lock while it runs; another that would start one too is refused at start-up,
told the first one's URL to use instead (``DATABRICKS_HOST``). The lock goes with the
worker's connection: a worker killed, or cut off by an outage, gives it up.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

#: The advisory lock key ("DARA" in ASCII): one embedded workspace per database.
LOCK_KEY = 0x44415241
_NAME = "dara embedded workspace at "


class EmbeddedWorkspaceTaken(RuntimeError):
    """Another worker on this database already runs the embedded workspace."""


class EmbeddedClaim:
    """This worker's claim to be the one with the embedded workspace; release it on stop."""

    def __init__(self, connection: object) -> None:
        self._connection = connection

    @classmethod
    async def take(cls, dsn: str, host: str) -> EmbeddedClaim:
        import psycopg  # resonate-pg's driver: present wherever that backend is

        connection = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=5, application_name=f"{_NAME}{host}"[:63]
        )
        try:
            row = await (await connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))).fetchone()
            if row is not None and row[0]:
                return cls(connection)
            holder = await (
                await connection.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted",
                    (LOCK_KEY,),
                )
            ).fetchone()
        except BaseException:
            await connection.close()
            raise
        await connection.close()
        first = holder[0].removeprefix(_NAME) if holder and holder[0].startswith(_NAME) else "the first worker's"
        msg = (
            "another DARA worker on this database already runs an embedded workspace "
            f"({first}); workers on one database must share one workspace, or a run's "
            f"Databricks run is looked up in the wrong one: set DATABRICKS_HOST={first} "
            "(or a real workspace) on this worker"
        )
        raise EmbeddedWorkspaceTaken(msg)

    async def release(self) -> None:
        try:
            await self._connection.close()  # type: ignore[attr-defined]
        except Exception:  # the lock goes with the connection either way
            logger.debug("closing the embedded-workspace claim failed", exc_info=True)
