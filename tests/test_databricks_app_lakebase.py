"""Lakebase as a Databricks App's database resource: the DSN comes from the resource.

app.yaml sets ``DARA_LAKEBASE_HOST`` from the App's ``database`` resource (``valueFrom``
gives its host), and the Apps runtime sets libpq's ``PGUSER`` (the App's service
principal), ``PGDATABASE``, ``PGPORT`` and ``PGSSLMODE`` for it. DARA builds no password
into anything: each login uses the instance's OAuth credential, renewed before it expires
(app.durable.lakebase). Here a real Postgres plays the instance, with a role whose
password only the credential source knows, and the Databricks HTTP double issues them.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import ValidationError

from app.settings import PROJECT_ROOT
from scripts.databricks_double import DatabricksDouble
from tests.harness import make_settings, running_service, sign
from tests.postgres import EmbeddedPostgres
from tests.test_postgres_lakebase import ROLE


def test_the_service_keeps_its_runs_in_the_database_the_resource_names(
    lakebase: str,  # tests.test_postgres_lakebase's fixture, shared through conftest
    postgres_server: EmbeddedPostgres,
    databricks_double: DatabricksDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued: list[str] = []

    def credential(request: object) -> dict[str, str]:
        token = f"cred-{len(issued) + 1}"
        with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(token)))
        issued.append(token)
        expires = datetime.now(UTC) + timedelta(hours=1)
        return {"token": token, "expiration_time": expires.isoformat().replace("+00:00", "Z")}

    databricks_double.route("POST", "/api/2.0/database/credentials", credential)
    resource = conninfo_to_dict(lakebase)
    # What the Apps runtime sets for the App's first database resource.
    for name, key in (("PGUSER", "user"), ("PGDATABASE", "dbname"), ("PGPORT", "port")):
        monkeypatch.setenv(name, str(resource[key]))
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")
    settings = make_settings(
        tmp_path,
        lakebase_host=resource["host"],  # DARA_LAKEBASE_HOST, valueFrom: database
        lakebase_instance="dara-db",
        databricks_host=databricks_double.url,
        deploy_on_start=False,
    )

    assert settings.postgres_dsn == f"host={resource['host']}"  # no user, no password in it
    with running_service(settings) as service:
        assert service.http.get("/health").json()["resonate"] != "in-process"
        service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "lb-app"}).raise_for_status()
        service.http.post("/api/resolve", json={"id": "lb-app:1", "value": 3, "token": sign(service.http, "lb-app:1")})
        run = service.wait_for("lb-app")

    assert (run["status"], run["result"]) == ("done", 3)
    assert issued, "the login used no Lakebase credential"
    with psycopg.connect(postgres_server.dsn(resource["dbname"])) as conn:
        stored = conn.execute("SELECT count(*) FROM resonate.promises WHERE id LIKE 'lb-app%'").fetchone()
    assert stored is not None and stored[0] >= 2  # the run and its wait, in the resource's database


def test_a_database_host_without_its_instance_is_refused_saying_why(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DARA_LAKEBASE_HOST is set without DARA_LAKEBASE_INSTANCE"):
        make_settings(tmp_path, lakebase_host="instance.database.example.com")


def test_scripts_grants_are_all_an_app_that_does_not_own_the_schema_needs(
    postgres_server: EmbeddedPostgres, postgres_dsn: str, tmp_path: Path
) -> None:
    """An operator applies resonate.sql; the App's role gets only scripts/lakebase_grants.sql.
    As that role DARA starts, runs, settles a callback, lists runs and fires its timers."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    grants = (PROJECT_ROOT / "scripts" / "lakebase_grants.sql").read_text()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(grants.replace(':"app"', sql.Identifier(role).as_string(conn)))
    settings = make_settings(tmp_path, postgres_dsn=make_conninfo(postgres_dsn, user=role), timer_alert_after=1)

    with running_service(settings) as service:
        service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "granted"}).raise_for_status()
        settled = service.http.post(
            "/api/resolve", json={"id": "granted:1", "value": 1, "token": sign(service.http, "granted:1")}
        )
        run = service.wait_for("granted")
        listed = service.http.get("/runs")
        timers = service.runtime.network.timers  # fires resonate.process_timeouts() as this role
        fired = timers.last_success
        deadline = time.monotonic() + 30
        while timers.last_success == fired and not timers.failures:  # until its next attempt
            assert time.monotonic() < deadline, "the timer driver made no attempt"
            time.sleep(0.02)
        health = service.http.get("/health")

    assert settled.json() == {"id": "granted:1", "state": "resolved", "already_settled": False}, settled.text
    assert (run["status"], run["result"]) == ("done", 1)
    assert listed.status_code == 200 and "granted" in [item["id"] for item in listed.json()["runs"]], listed.text
    assert (timers.failures, timers.last_error) == (0, None)
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "resonate": "postgres", "workspace": "embedded"}
