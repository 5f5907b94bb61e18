"""The Postgres backend (resonate-pg), kept working through database outages.

The one module of DARA that knows resonate-pg's insides. resonate-pg's
``PostgresConnection`` is built for a database that never goes away; three of its
choices turn a short outage into a long one, and :class:`PostgresBackend` replaces
each of them:

* **Timers.** The connector fires timers (durable sleeps, wait deadlines, watchdogs)
  by calling ``resonate.process_timeouts()`` from its pump, and turns that off for
  good at the first error ("leaving timers to pg_cron"): after any blip, timers never
  fired again until a restart. :class:`TimerDriver` calls it on a steady tick instead,
  backs off on errors (up to :data:`MAX_BACKOFF` seconds), never gives up, logs once
  per outage, and records when it last succeeded, so that timers falling behind are
  an alert in the log and a 503 from ``/health``.
* **Waiting on a dead database.** The connector's psycopg pool waits 30 s for a
  connection and backs off its reconnects exponentially (a 30 s outage took ~24 s to
  recover from). :class:`PoolSessions` waits ``DARA_POSTGRES_TIMEOUT`` (1.5 s) and
  then raises :class:`BackendUnreachable` (the API answers 503), gives up a reconnect
  attempt after :data:`RECONNECT_WINDOW` so the next request starts a fresh one, and
  has the pool check its idle connections when one is found dead, so those that died
  with the server are not handed out one request at a time.
* **The LISTEN connection** reconnects on a ladder that reaches 60 s. Here a failed
  attempt is logged (once per outage) and ends the session as if cleanly, which keeps
  the connector's loop at the bottom of its ladder: it listens again after 1 s, every
  time. (LISTEN is the fast path only: the pump's tick finds what a deaf listener
  missed.) Losing it is also the first sign of a restarted server, so it tells the
  pool to check its connections.

Failures of the pump and the listener are logged once per outage too, not on every
tick. Everything here is pinned to resonate-pg 0.8 (``tests/test_postgres_outage.py``
fails if the overridden internals change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from resonate_pg import PostgresConnection
from resonate_pg.client import DEFAULT_MAX_POOL_SIZE, PgConn
from resonate_pg.connection import PROCESS_TIMEOUTS_SQL

from app.durable.create_replies import CreateReplies

logger = logging.getLogger(__name__)

#: Seconds between timer ticks while the database answers (the connector's own tick).
TIMER_TICK = 0.25
#: Longest wait between timer ticks while it does not.
MAX_BACKOFF = 2.0
#: Seconds the pool keeps retrying one lost connection before leaving it to the next
#: request. psycopg_pool doubles the delay between attempts without a cap, so a long
#: window means a long wait after the database is back.
RECONNECT_WINDOW = 2.0
#: How long /health waits for ``SELECT 1``.
PING_TIMEOUT = 1.0
#: TCP keepalives for the LISTEN connection, unless the DSN sets them: it sits idle, and
#: without them a dead peer (not a stopped server, which closes the socket) is never seen.
LISTEN_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


#: The pool's name in psycopg_pool's log.
POOL_NAME = "dara-resonate-pg"


class _QuietPoolLog(logging.Filter):
    """Drops psycopg_pool's warning for each failed attempt to connect our pool: an outage
    would log several a second. PoolSessions logs its first failure and its end instead."""

    TEMPLATES = ("error connecting in %r", "reconnection attempt in pool %r")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        ours = bool(args) and args[0] == POOL_NAME
        return not (ours and str(record.msg).startswith(self.TEMPLATES))


if not any(isinstance(f, _QuietPoolLog) for f in logging.getLogger("psycopg.pool").filters):
    logging.getLogger("psycopg.pool").addFilter(_QuietPoolLog())


class BackendUnreachable(psycopg.OperationalError):
    """No usable Postgres connection. Its message names no host or path."""


def describe(exc: BaseException) -> str:
    """A short reason for ``exc``, without the host, port or socket path libpq names."""
    if isinstance(exc, BackendUnreachable):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary  # from the server: says nothing of where it is
    text = str(exc).strip()
    # libpq: 'connection to server at "host" (addr), port 5432 failed: Connection refused'
    reason = text.rsplit("failed: ", 1)[-1].strip().splitlines()
    return reason[0].strip() if reason and reason[0].strip() else type(exc).__name__


class PoolSessions:
    """resonate-pg's ``PgSessions`` over a psycopg pool that fails fast and heals fast.

    ``timeout`` bounds how long :meth:`session` waits for a connection (and libpq's
    ``connect_timeout``, at least 2 s). A connection found dead (the server went away)
    has the pool check all its idle connections at once (:meth:`lost`), so those that
    died with it are dropped rather than handed out one request at a time, while a
    healthy pool pays nothing.

    Its connections are in autocommit. Each of resonate-pg's requests is one statement
    (``resonate.resonate_rpc``), atomic on its own, so wrapping it in BEGIN and COMMIT
    only cost two more round trips per request; the one unit of work with several
    statements, the pump's drain, opens its own transaction (:meth:`PostgresBackend._drain`).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        timeout: float,
        max_size: int = DEFAULT_MAX_POOL_SIZE,
        password: Callable[[], str] | None = None,
    ) -> None:
        self._conninfo = conninfo
        #: Asked for the password at every login (a Lakebase credential: app.durable.lakebase).
        self._password = password
        self.timeout = timeout
        self._max_size = max_size
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(timeout)),
            "autocommit": True,
        }
        self._pool: AsyncConnectionPool | None = None
        self._lock = asyncio.Lock()
        self._checking: asyncio.Task[None] | None = None
        #: Why the last attempt to connect or query failed (no host or path in it).
        self.last_error: str | None = None
        #: LISTEN connections opened so far (a reconnect after an outage adds one).
        self.listener_connects = 0
        #: Called when a LISTEN connection opens.
        self.on_listen: Callable[[], object] = lambda: None
        self._cannot_connect = False
        self._connection_class = self._recording_connection_class()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[PgConn]:
        async with self._borrow(self.timeout) as conn:
            yield conn

    async def dedicated(self) -> PgConn:
        """An autocommit connection for LISTEN, with keepalives and the connect timeout."""
        given = conninfo_to_dict(self._conninfo)
        extra: dict[str, Any] = {key: value for key, value in LISTEN_KEEPALIVES.items() if key not in given}
        conn = await self._connection_class.connect(self._conninfo, **await self._login_kwargs(), **extra)
        self.listener_connects += 1
        self.on_listen()
        return conn  # type: ignore[return-value]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=2)

    async def ping(self, timeout: float = PING_TIMEOUT) -> None:
        """``SELECT 1`` within ``timeout`` seconds, or raise."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._borrow(timeout) as conn, asyncio.timeout_at(deadline):
            await (await conn.execute("SELECT 1")).fetchone()

    # -- internals ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _borrow(self, timeout: float) -> AsyncIterator[PgConn]:
        pool = await self._ensure_pool()
        try:
            conn = await pool.getconn(timeout=timeout)
        except PoolTimeout as exc:
            why = f"; last error: {self.last_error}" if self.last_error else ""
            raise BackendUnreachable(f"no Postgres connection within {timeout:g} s{why}") from exc
        try:
            async with conn:  # commits, or rolls back on an error, as pool.connection() does
                yield conn  # type: ignore[misc]
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            if (checking := self.lost(exc)) is not None:
                await checking
            raise BackendUnreachable(f"lost the Postgres connection: {self.last_error}") from exc
        finally:
            await pool.putconn(conn)

    def lost(self, exc: BaseException) -> asyncio.Task[None] | None:
        """A connection died: have the pool check its idle ones (awaitable, once at a time).

        Checking takes them all out of the pool first, so no request is handed one of
        them meanwhile; a dead one is replaced, a live one costs a round trip.
        """
        self.last_error = describe(exc)
        if self._pool is None:
            return None
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._check_pool(self._pool))
        return self._checking

    async def _check_pool(self, pool: AsyncConnectionPool) -> None:
        with contextlib.suppress(Exception):
            await pool.check()

    def _recording_connection_class(self) -> type[psycopg.AsyncConnection[Any]]:
        """A connection class that notes why connecting failed (the pool keeps no record),
        and logs the first failure of an outage and the first success after it."""
        sessions = self

        class DaraPgConnection(psycopg.AsyncConnection[Any]):
            @classmethod
            async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
                try:
                    conn = await super().connect(conninfo, **kwargs)
                except psycopg.OperationalError as exc:
                    sessions.last_error = describe(exc)
                    if not sessions._cannot_connect:
                        sessions._cannot_connect = True
                        logger.warning("cannot connect to Postgres; retrying until it works: %s", exc)
                    raise
                if sessions._cannot_connect:
                    sessions._cannot_connect = False
                    logger.warning("connected to Postgres again")
                return conn

        DaraPgConnection.__qualname__ = "DaraPgConnection"  # as psycopg_pool's log shows it
        return DaraPgConnection

    async def _login_kwargs(self) -> dict[str, Any]:
        """How to log in now: with the current password, where it rotates."""
        if self._password is None:
            return self._connect_kwargs
        return {**self._connect_kwargs, "password": await asyncio.to_thread(self._password)}

    async def _ensure_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    pool = AsyncConnectionPool(
                        self._conninfo,
                        connection_class=self._connection_class,
                        # A callable: psycopg_pool asks it at every new connection.
                        kwargs=self._login_kwargs if self._password is not None else self._connect_kwargs,
                        min_size=1,
                        max_size=self._max_size,
                        open=False,
                        timeout=self.timeout,
                        reconnect_timeout=RECONNECT_WINDOW,
                        name=POOL_NAME,
                    )
                    await pool.open()
                    self._pool = pool
        return self._pool


class TimerDriver:
    """Calls ``fire`` (``resonate.process_timeouts()``) every :data:`TIMER_TICK` seconds, forever.

    On an error it backs off (doubling, up to :data:`MAX_BACKOFF`) and keeps trying;
    it logs the first error of an outage and the recovery, not every attempt. When no
    attempt has succeeded for ``alert_after`` seconds it logs an alert, once per
    outage, and :attr:`behind` says so. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        fire: Callable[[], Awaitable[object]],
        *,
        alert_after: float,
        tick: float = TIMER_TICK,
        max_backoff: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._fire = fire
        self.alert_after = alert_after
        self._tick = tick
        self._max_backoff = max_backoff
        self._clock = clock
        self._sleep = sleep
        #: When ``fire`` last succeeded (the driver's start, before its first success).
        self.last_success = clock()
        #: Attempts that failed since the last success.
        self.failures = 0
        self.last_error: str | None = None
        self._delay = tick
        self._alerted = False

    @property
    def lag(self) -> float:
        """Seconds since timers were last fired."""
        return self._clock() - self.last_success

    @property
    def behind(self) -> bool:
        self._maybe_alert()
        return self.lag >= self.alert_after

    async def run(self) -> None:
        self.last_success = self._clock()
        while True:
            await self._sleep(await self.tick())

    async def tick(self) -> float:
        """One attempt; returns how long to wait before the next."""
        try:
            await self._fire()
        except Exception as exc:  # noqa: BLE001 -- any failure is _failed's to report
            self._failed(exc)
        else:
            self._succeeded()
        return self._delay

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = str(exc) or type(exc).__name__
        self._delay = min(max(self._delay, self._tick) * 2, self._max_backoff)
        if self.failures == 1:
            hint = ""
            if isinstance(exc.__cause__ or exc, psycopg.errors.InsufficientPrivilege):
                hint = (
                    " (grant this role EXECUTE on resonate.process_timeouts(), or set "
                    "DARA_POSTGRES_DRIVE_TIMERS=false if pg_cron drives the timers)"
                )
            logger.warning(
                "timers: resonate.process_timeouts() failed; retrying every %g s at most until it works%s: %s",
                self._max_backoff,
                hint,
                self.last_error,
            )
        else:
            logger.debug("timers: attempt %d failed: %s", self.failures, exc)
        self._maybe_alert()

    def _succeeded(self) -> None:
        if self.failures:
            logger.warning(
                "timers: resonate.process_timeouts() works again, after %.1f s and %d failed attempts",
                self.lag,
                self.failures,
            )
        self.last_success = self._clock()
        self.failures = 0
        self.last_error = None
        self._delay = self._tick
        self._alerted = False

    def _maybe_alert(self) -> None:
        if not self._alerted and self.lag >= self.alert_after:
            self._alerted = True
            logger.warning(
                "ALERT timers are behind: no successful resonate.process_timeouts() for %.0f s; "
                "sleeps, wait deadlines and watchdogs fire late until it works again (last error: %s)",
                self.lag,
                self.last_error or "none: the call has not returned",
            )


class PostgresBackend(PostgresConnection):
    """resonate-pg's connector, with DARA's timer driver, pool and quieter failures.

    ``drive_timers=False`` leaves timers to pg_cron (and /health does not watch them).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        pid: str,
        group: str,
        timeout: float,
        alert_after: float,
        drive_timers: bool = True,
        password: Callable[[], str] | None = None,
    ) -> None:
        self.sessions = PoolSessions(conninfo, timeout=timeout, password=password)
        super().__init__(pid=pid, group=group, sessions=self.sessions, drive_timers=False)
        self.timers = TimerDriver(self._process_timeouts, alert_after=alert_after) if drive_timers else None
        self._timer_task: asyncio.Task[None] | None = None
        self._closed = False
        self._quiet: set[str] = set()  # loops whose failure this outage has been logged
        self.sessions.on_listen = lambda: self._working("listener")
        #: Replies to runs' creates, for the starts waiting on them (app.durable.create_replies).
        self.create_replies = CreateReplies()

    async def start(self) -> None:
        await super().start()
        # Resonate spawns start() as a task: it may run after stop(), and must not leak a driver.
        if self.timers is not None and self._timer_task is None and not self._closed:
            self._timer_task = asyncio.create_task(self.timers.run(), name="dara-resonate-pg-timers")

    async def stop(self) -> None:
        self._closed = True
        task, self._timer_task = self._timer_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await super().stop()

    async def problem(self) -> str | None:
        """What is wrong with the backend, for /health: no host or path in it. Cheap."""
        try:
            await self.sessions.ping()
        except Exception as exc:  # noqa: BLE001 -- any failure is the answer
            return f"the Postgres backend is unreachable: {describe(exc)}"
        if self.timers is not None and self.timers.behind:
            return f"timers are behind: resonate.process_timeouts() has not succeeded for {self.timers.lag:.0f} s"
        return None

    async def _process_timeouts(self) -> None:
        async with self.sessions.session() as conn:
            await conn.execute(PROCESS_TIMEOUTS_SQL)

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        reply = await super().send(req, headers)
        self.create_replies.note(req, reply)
        return reply

    # -- resonate-pg internals, overridden ------------------------------------------

    async def _drain(self) -> None:
        """The pump's pass; its failure is logged once per outage, not every tick.

        resonate-pg's own pass, in one explicit transaction: the sessions are in
        autocommit, and the messages a pass claims are delivered only once their
        claim has committed, all together.
        """
        try:
            await self._fire_timers()
            messages: list[str] = []
            # resonate-pg's PgConn protocol leaves transaction() out; its sessions are psycopg connections.
            async with self._sessions.session() as conn, conn.transaction():  # type: ignore[attr-defined]
                messages += await self._dequeue_executes(conn, self._anycast)
                messages += await self._dequeue_executes(conn, self._unicast)
                messages += await self._dequeue_unblocks(conn, self._unicast)
            for message in messages:
                self._deliver(message)
        except Exception as exc:  # noqa: BLE001 -- any failure is _failing's to report
            self._failing("pump", exc)
        else:
            self._working("pump")

    async def _listen_once(self) -> None:
        """One LISTEN session; a failure is logged once per outage, then retried.

        Not re-raised: to the connector's loop the session then ended cleanly, so it
        listens again after 1 s instead of climbing its ladder towards 60 s.
        """
        try:
            await super()._listen_once()
        except Exception as exc:  # noqa: BLE001 -- noted, not re-raised (see above)
            if self._running:
                self.sessions.lost(exc)  # the server went away: pooled connections may be dead too
                self._failing("listener", exc)

    def _failing(self, loop: str, exc: Exception) -> None:
        if loop in self._quiet:
            logger.debug("postgres %s failed again: %s", loop, exc)
            return
        self._quiet.add(loop)
        logger.warning("postgres %s failed; retrying until it works: %s", loop, exc)

    def _working(self, loop: str) -> None:
        if loop in self._quiet:
            self._quiet.discard(loop)
            logger.warning("postgres %s works again", loop)
