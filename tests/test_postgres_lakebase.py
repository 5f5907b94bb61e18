"""Lakebase passwords are OAuth credentials that expire hourly: DARA renews them before
they do, and new connections log in with the current one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from app.durable.lakebase import RotatingPassword
from scripts.databricks_double import DatabricksDouble, RecordedRequest
from tests.harness import make_settings, running_service, sign
from tests.postgres import EmbeddedPostgres


def test_a_credential_is_reused_until_shortly_before_it_expires_then_renewed() -> None:
    now = [1000.0]
    issued: list[str] = []

    def fetch() -> tuple[str, float]:
        issued.append(f"token-{len(issued) + 1}")
        return issued[-1], now[0] + 3600  # valid for an hour, as Lakebase's are

    password = RotatingPassword(fetch, clock=lambda: now[0], renew_before=timedelta(minutes=10))

    first = password()
    now[0] += 3600 - 601  # 10 min 1 s before expiry: still good
    still = password()
    now[0] += 2  # inside the renewal margin
    renewed = password()

    assert (first, still, renewed) == ("token-1", "token-1", "token-2")
    assert issued == ["token-1", "token-2"]


ROLE = "lakebase_app"


@pytest.fixture
def lakebase(postgres_server: EmbeddedPostgres, postgres_dsn: str) -> Iterator[str]:
    """A login role whose password only the credential source knows (scram, not trust),
    on a fresh database with the schema; its DSN carries no password, as Lakebase's."""
    hba = postgres_server.pgdata / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"local all {ROLE} scram-sha-256\n{original}")
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        # Roles are the server's, not a database's: a second test in the session finds it.
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(f"{verb} ROLE {{}} LOGIN SUPERUSER PASSWORD 'unknown-to-dara'").format(sql.Identifier(ROLE))
        )
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield make_conninfo(postgres_dsn, user=ROLE)
    finally:
        hba.write_text(original)
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (ROLE,))


def test_the_service_logs_in_with_each_renewed_credential(
    lakebase: str,
    postgres_server: EmbeddedPostgres,
    databricks_double: DatabricksDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each credential the workspace issues becomes the role's only password (as Lakebase
    rotates it) and expires within DARA's renewal margin: every new connection must fetch
    a fresh one. Cut off from Postgres, the service logs in again and carries on."""
    issued: list[str] = []

    def credential(request: RecordedRequest) -> dict[str, str]:
        assert request.json == {"instance_names": ["dara-db"]} or request.json.get("instance_names") == ["dara-db"]
        token = f"cred-{len(issued) + 1}-{uuid.uuid4().hex}"
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(token)))
        issued.append(token)
        expires = datetime.now(UTC) + timedelta(minutes=5)  # inside the 10 min renewal margin
        return {"token": token, "expiration_time": expires.isoformat().replace("+00:00", "Z")}

    databricks_double.route("POST", "/api/2.0/database/credentials", credential)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")
    settings = make_settings(
        tmp_path,
        postgres_dsn=lakebase,
        lakebase_instance="dara-db",
        databricks_host=databricks_double.url,
        deploy_on_start=False,
    )
    with running_service(settings) as service:
        service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "lb-1"}).raise_for_status()
        service.http.post("/resolve", json={"id": "lb-1:1", "value": 1, "token": sign(service.http, "lb-1:1")})
        first = service.wait_for("lb-1")
        before = len(issued)
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:  # cut every session off
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (ROLE,))
        deadline = time.monotonic() + 30
        while (
            again := service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "lb-2"})
        ).status_code == 503:
            assert time.monotonic() < deadline, again.text
            time.sleep(0.05)  # a client's back-off while the pool logs in again
        service.http.post("/resolve", json={"id": "lb-2:1", "value": 2, "token": sign(service.http, "lb-2:1")})
        second = service.wait_for("lb-2")

    assert (first["status"], second["status"]) == ("done", "done")
    assert len(issued) > before >= 1  # logged in again with a credential issued after the cut
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_conninfo(lakebase, password=issued[0])).close()  # rotated away
