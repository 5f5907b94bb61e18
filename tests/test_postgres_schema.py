"""The resonate-pg schema: checked before DARA starts on Postgres, applied once by a
command that is idempotent and never shows the DSN's password. Real Postgres."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from app.durable import postgres_schema
from app.durable.postgres_schema import APPLY_COMMAND, SCHEMA_VERSION, SchemaError
from app.runtime import Runtime
from app.settings import PROJECT_ROOT
from tests.harness import make_settings
from tests.postgres import EmbeddedPostgres

PASSWORD = "s3cret-Pa55word"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def schema_command(*args: str) -> Ran:
    """``python -m app.durable.postgres_schema *args``, in this process (it is quicker)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as env:
        env.delenv("DARA_POSTGRES_DSN", raising=False)
        try:
            code = postgres_schema.main(list(args))
        except SystemExit as exit:  # argparse
            code = exit.code if isinstance(exit.code, int) else 1
    return Ran(code, out.getvalue(), err.getvalue())


def schema_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The same, as a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARA_")}
    return subprocess.run(
        [sys.executable, "-m", "app.durable.postgres_schema", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def with_password(dsn: str) -> str:
    """``dsn`` with a password (the embedded server trusts local users, so it is never checked)."""
    return f"{dsn} password={PASSWORD}"


def set_version(dsn: str, version: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION resonate.get_schema_version() RETURNS text "
            f"LANGUAGE sql IMMUTABLE AS $$ SELECT '{version}'::text $$"
        )


def test_the_schema_files_version_is_the_one_dara_speaks(postgres_server: EmbeddedPostgres) -> None:
    sql = postgres_server.schema.read_text()

    assert postgres_schema.file_version(sql) == SCHEMA_VERSION
    assert postgres_schema.file_version(sql.replace("'0.1.0'::text", "'9.9.9'::text")) == "9.9.9"
    assert postgres_schema.file_version("CREATE TABLE promises (id text);") is None


def test_apply_then_check_then_apply_again_changes_nothing(postgres_server: EmbeddedPostgres) -> None:
    dsn = with_password(postgres_server.new_database(schema=False))

    first = schema_command("apply", "--dsn", dsn, "--schema", str(postgres_server.schema))
    checked = schema_command("check", "--dsn", dsn)
    again = schema_command("apply", "--dsn", dsn, "--schema", str(postgres_server.schema))

    assert (first.returncode, first.stderr) == (0, ""), first.stderr
    assert first.stdout.startswith(f"applied resonate-pg schema {SCHEMA_VERSION} to database ")
    assert (checked.returncode, checked.stdout.count("\n")) == (0, 1), checked.stderr
    assert checked.stdout.endswith(f"has resonate-pg schema {SCHEMA_VERSION}: DARA can use it\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith(f"already has resonate-pg schema {SCHEMA_VERSION}; nothing to do\n")
    for ran in (first, checked, again):
        assert PASSWORD not in ran.stdout + ran.stderr


def test_check_of_a_database_without_the_schema_says_how_to_apply_it(postgres_server: EmbeddedPostgres) -> None:
    dsn = with_password(postgres_server.new_database(schema=False))

    checked = schema_process("check", "--dsn", dsn)

    assert checked.returncode == 1
    [line] = checked.stderr.splitlines()
    assert "has no resonate-pg schema (no resonate.get_schema_version())" in line
    assert APPLY_COMMAND in line and "resonate-pg's repository" in line
    assert PASSWORD not in checked.stdout + checked.stderr
    with pytest.raises(SchemaError, match="has no resonate-pg schema"):
        postgres_schema.check(dsn)


def test_another_version_is_refused_by_check_and_by_apply(postgres_server: EmbeddedPostgres) -> None:
    dsn = postgres_server.new_database()
    set_version(dsn, "0.0.9")

    with pytest.raises(SchemaError, match=f"has resonate-pg schema 0.0.9, but .* speaks schema {SCHEMA_VERSION}"):
        postgres_schema.check(dsn)
    with pytest.raises(SchemaError, match="already has resonate-pg schema 0.0.9; refusing to apply 0.1.0"):
        postgres_schema.apply(dsn, postgres_server.schema)
    assert postgres_schema._installed_version(psycopg.connect(dsn)) == "0.0.9"  # left alone


def test_a_file_of_another_version_or_no_schema_file_is_refused(
    postgres_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = postgres_server.new_database(schema=False)
    newer = tmp_path / "resonate.sql"
    newer.write_text(postgres_server.schema.read_text().replace("'0.1.0'::text", "'0.2.0'::text"))

    other = schema_command("apply", "--dsn", dsn, "--schema", str(newer))
    missing = schema_command("apply", "--dsn", dsn, "--schema", str(tmp_path / "nope.sql"))
    not_it = schema_command("apply", "--dsn", dsn, "--schema", str(PROJECT_ROOT / "README.md"))

    assert other.returncode == 1 and "is resonate-pg schema 0.2.0, but DARA's connector" in other.stderr
    assert missing.returncode == 1 and "cannot read the schema file" in missing.stderr
    assert not_it.returncode == 1 and "does not look like resonate-pg's resonate.sql" in not_it.stderr
    for ran in (other, missing, not_it):
        assert len(ran.stderr.splitlines()) == 1 and "Traceback" not in ran.stderr
    with pytest.raises(SchemaError, match="has no resonate-pg schema"):
        postgres_schema.check(dsn)  # nothing was applied


def test_a_failed_apply_keeps_nothing(postgres_server: EmbeddedPostgres, tmp_path: Path) -> None:
    """One transaction: a script that breaks half-way leaves the database as it was."""
    dsn = postgres_server.new_database(schema=False)
    broken = tmp_path / "resonate.sql"
    broken.write_text(postgres_server.schema.read_text() + "\nSELECT no_such_function();\n")

    with pytest.raises(SchemaError, match="failed, and nothing of it was kept: .*no_such_function"):
        postgres_schema.apply(dsn, broken)

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('resonate')").fetchone() == (None,)


def test_unreachable_or_malformed_dsns_are_one_line_without_the_password(
    postgres_server: EmbeddedPostgres,
) -> None:
    gone = schema_command("check", "--dsn", f"postgresql://dara:{PASSWORD}@127.0.0.1:1/dara?connect_timeout=2")
    no_db = schema_command("check", "--dsn", with_password(postgres_server.dsn("no_such_db")))
    malformed = schema_command("check", "--dsn", f"user=dara password={PASSWORD} oops")
    nothing = schema_command("check")

    assert gone.returncode == 1 and 'cannot connect to database "dara" at 127.0.0.1:1 (user dara)' in gone.stderr
    assert no_db.returncode == 1 and 'database "no_such_db" does not exist' in no_db.stderr
    assert malformed.returncode == 1 and "not a valid Postgres connection string" in malformed.stderr
    assert nothing.returncode == 1 and "no database: pass --dsn or set DARA_POSTGRES_DSN" in nothing.stderr
    for ran in (gone, no_db, malformed, nothing):
        assert len(ran.stderr.splitlines()) == 1 and "Traceback" not in ran.stderr, ran.stderr
        assert PASSWORD not in ran.stdout + ran.stderr


@pytest.mark.anyio
async def test_the_service_refuses_to_start_on_a_database_without_the_schema(
    postgres_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = postgres_server.new_database(schema=False)

    try:
        runtime = await Runtime.start(make_settings(tmp_path, postgres_dsn=dsn, deploy_on_start=False))
    except SchemaError as exc:
        refused = str(exc)
    else:
        await runtime.stop()
        pytest.fail("the service started on a database without the resonate-pg schema")

    assert "has no resonate-pg schema" in refused and APPLY_COMMAND in refused
    assert not (tmp_path / "workspace").exists()  # refused before anything started


def test_python_m_app_says_so_in_one_line(postgres_server: EmbeddedPostgres, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARA_", "DATABRICKS_", "RESONATE_"))}
    dsn = with_password(postgres_server.new_database(schema=False))
    env |= {"DARA_POSTGRES_DSN": dsn, "DARA_STATE_DIR": str(tmp_path), "DARA_PORT": "0"}

    started = subprocess.run(
        [sys.executable, "-m", "app"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert started.returncode == 2, started.stderr
    [line] = started.stderr.splitlines()
    assert line.startswith("DARA cannot start: DARA_POSTGRES_DSN: database ")
    assert "has no resonate-pg schema" in line and APPLY_COMMAND in line
    assert PASSWORD not in line
