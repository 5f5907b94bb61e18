"""The resonate-pg schema: is it in DARA's database, and putting it there once.

DARA on Postgres (``DARA_POSTGRES_DSN``) talks to a database through the resonate-pg
connector, whose server *is* a SQL file: ``resonate.sql`` from resonate-pg's repository
(https://github.com/resonatehq/resonate-pg). The connector's wheel does not ship it,
and DARA does not copy it: an operator applies it once per database::

    python -m app.durable.postgres_schema apply --dsn "$DARA_POSTGRES_DSN" --schema path/to/resonate.sql
    python -m app.durable.postgres_schema check --dsn "$DARA_POSTGRES_DSN"

:func:`check` is what ``Runtime.start`` runs first on Postgres, so a service pointed
at a database without the schema (or with one the pinned connector does not speak)
refuses to start and says how to fix it, instead of failing each request later.
:func:`apply` is idempotent. No message here ever shows the DSN's password.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict

#: The schema version the pinned connector (resonate-pg 0.8.0) talks to.
SCHEMA_VERSION = "0.1.0"
#: Seconds to wait for a connection (unless the DSN sets its own ``connect_timeout``).
CONNECT_TIMEOUT = 10
#: Advisory lock held while applying, so two concurrent applies do not interleave.
APPLY_LOCK_KEY = 0x44415253  # "DARS"
REPOSITORY = "https://github.com/resonatehq/resonate-pg"
APPLY_COMMAND = 'python -m app.durable.postgres_schema apply --dsn "$DARA_POSTGRES_DSN" --schema path/to/resonate.sql'
HOW_TO_APPLY = (
    f"apply it once with: {APPLY_COMMAND} "
    f"(resonate.sql comes from resonate-pg's repository, {REPOSITORY}, at schema version {SCHEMA_VERSION})"
)

# How resonate.sql defines its version: a SQL function whose body selects one literal,
#   CREATE OR REPLACE FUNCTION resonate.get_schema_version() RETURNS text
#     LANGUAGE sql IMMUTABLE AS $$ SELECT '0.1.0'::text $$;
_VERSION_FUNCTION = re.compile(
    r"FUNCTION\s+(?:resonate\.)?get_schema_version\s*\(\s*\)(?P<head>.*?)"
    r"\$(?P<tag>\w*)\$(?P<body>.*?)\$(?P=tag)\$",
    re.IGNORECASE | re.DOTALL,
)
_LITERAL = re.compile(r"'([^']+)'")


class SchemaError(RuntimeError):
    """The database cannot be used (or set up) as DARA's resonate-pg backend; says why and what to do."""


# -- checking -------------------------------------------------------------------------


def check(dsn: str, password: str | None = None) -> str:
    """The schema version in ``dsn``'s database; raises :class:`SchemaError` unless it is
    :data:`SCHEMA_VERSION`. ``password`` overrides the DSN's (a Lakebase credential)."""
    where = describe(dsn)
    with _connect(dsn, password) as conn:
        try:
            found = _installed_version(conn)
        except errors.InsufficientPrivilege as exc:
            msg = (
                f"{where}: the user may not call resonate.get_schema_version() ({_one_line(exc)}); "
                "grant it the resonate_worker role that resonate.sql creates"
            )
            raise SchemaError(msg) from None
        except psycopg.Error as exc:
            raise SchemaError(f"cannot read the resonate-pg schema version of {where}: {_one_line(exc)}") from None
    if found is None:
        raise SchemaError(f"{where} has no resonate-pg schema (no resonate.get_schema_version()); {HOW_TO_APPLY}")
    if found != SCHEMA_VERSION:
        msg = (
            f"{where} has resonate-pg schema {found}, but DARA's connector ({_connector()}) "
            f"speaks schema {SCHEMA_VERSION}: point DARA_POSTGRES_DSN at a database with schema "
            f"{SCHEMA_VERSION}, or at an empty one and {HOW_TO_APPLY}"
        )
        raise SchemaError(msg)
    return found


# -- applying -------------------------------------------------------------------------


def file_version(sql: str) -> str | None:
    """The version ``resonate.sql``'s text defines ``get_schema_version()`` to return."""
    match = _VERSION_FUNCTION.search(sql)
    if match is None:
        return None
    literal = _LITERAL.search(match["body"])
    return literal[1] if literal else None


def apply(dsn: str, schema_path: str | Path) -> str:
    """Apply ``schema_path`` (resonate-pg's ``resonate.sql``) to ``dsn``'s database, in one
    transaction; returns a one-line account of what was done.

    Idempotent: a database that already has the file's version is left alone. A
    database with another version is refused (this is no migration tool), and so is a
    file of a version DARA's connector does not speak.
    """
    path = Path(schema_path)
    try:
        sql = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read the schema file {path}: {exc.strerror or exc}") from None
    wanted = file_version(sql)
    if wanted is None:
        msg = (
            f"{path} does not look like resonate-pg's resonate.sql: it defines no "
            f"resonate.get_schema_version() (get the file from {REPOSITORY})"
        )
        raise SchemaError(msg)
    if wanted != SCHEMA_VERSION:
        msg = (
            f"{path} is resonate-pg schema {wanted}, but DARA's connector ({_connector()}) speaks "
            f"schema {SCHEMA_VERSION}: use resonate.sql at that version from {REPOSITORY}"
        )
        raise SchemaError(msg)
    where = describe(dsn)
    with _connect(dsn) as conn:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK_KEY,))
                found = _installed_version(conn)
                if found == wanted:
                    return f"{where} already has resonate-pg schema {found}; nothing to do"
                if found is not None:
                    msg = (
                        f"{where} already has resonate-pg schema {found}; refusing to apply "
                        f"{wanted} over it (migrating between versions is not this command's job)"
                    )
                    raise SchemaError(msg)
                conn.execute(sql)  # no parameters: the whole script, one transaction
                applied = _installed_version(conn)
        except psycopg.Error as exc:
            msg = f"applying {path} to {where} failed, and nothing of it was kept: {_one_line(exc)}"
            raise SchemaError(msg) from None
    if applied != wanted:
        raise SchemaError(f"applied {path} to {where}, but it now reports schema {applied}, not {wanted}")
    return f"applied resonate-pg schema {wanted} to {where}"


# -- connections and messages ---------------------------------------------------------


def describe(dsn: str) -> str:
    """``database "x" at host:port (user u)``: the DSN without its password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the database"
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user") or "?"
    user = params.get("user") or os.environ.get("PGUSER")
    return f'database "{dbname}" at {host}:{port}' + (f" (user {user})" if user else "")


def _connect(dsn: str, password: str | None = None) -> psycopg.Connection:
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        msg = (
            "the DSN is not a valid Postgres connection string (a postgresql:// URI or key=value "
            "pairs); it is not shown here, as it may hold a password"
        )
        raise SchemaError(msg) from None
    timeout: dict[str, Any] = {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT}
    if password is not None:
        timeout["password"] = password
    try:
        return psycopg.connect(dsn, application_name="dara schema check", **timeout)
    except psycopg.Error as exc:
        shown = _redact(_redact(_one_line(exc), params), {"password": password})  # the DSN's, and a Lakebase one
        raise SchemaError(f"cannot connect to {describe(dsn)}: {shown}") from None


def _installed_version(conn: psycopg.Connection) -> str | None:
    """``resonate.get_schema_version()``, or None where the schema (or the function) is missing."""
    row = conn.execute("SELECT to_regprocedure('resonate.get_schema_version()') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return None
    row = conn.execute("SELECT resonate.get_schema_version()").fetchone()
    return str(row[0]) if row and row[0] is not None else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _redact(text: str, params: dict[str, Any]) -> str:
    password = params.get("password")
    return text.replace(password, "***") if password else text


def _connector() -> str:
    try:
        return f"resonate-pg {version('resonate-pg')}"
    except PackageNotFoundError:
        return "resonate-pg"


# -- command line ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # one line, exit 1
        self.exit(1, f"{self.prog}: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m app.durable.postgres_schema",
        description="Check or apply the resonate-pg schema in DARA's Postgres database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    dsn_help = "the database (default: $DARA_POSTGRES_DSN)"
    checking = commands.add_parser("check", help="say whether the database has the schema DARA needs")
    checking.add_argument("--dsn", default=os.environ.get("DARA_POSTGRES_DSN"), help=dsn_help)
    applying = commands.add_parser("apply", help="apply resonate.sql once (idempotent)")
    applying.add_argument("--dsn", default=os.environ.get("DARA_POSTGRES_DSN"), help=dsn_help)
    applying.add_argument("--schema", required=True, help=f"resonate.sql from {REPOSITORY}")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("no database: pass --dsn or set DARA_POSTGRES_DSN")
    try:
        if args.command == "check":
            found = check(args.dsn)
            print(f"{describe(args.dsn)} has resonate-pg schema {found}: DARA can use it")
        else:
            print(apply(args.dsn, args.schema))
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
