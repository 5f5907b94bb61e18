"""Identity (docs/SECURITY.md): forwarded users are believed only inside the Databricks
Apps runtime, every run records who started it, and only they or an admin may cancel it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from app.settings import PROJECT_ROOT
from tests.harness import APPS_RUNTIME, Service, make_settings, running_service

TOKEN = "identity-api-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ADA = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-User": "1@2"}
BOB = {"X-Forwarded-Email": "bob@example.com", "X-Forwarded-User": "3@4"}
BOSS = {"X-Forwarded-Email": "boss@example.com", "X-Forwarded-User": "5@6"}


def test_trusting_forwarded_users_outside_the_apps_runtime_refuses_to_start(tmp_path: Path) -> None:
    """Outside an App anyone reaching the port could send X-Forwarded-Email: the real
    process exits at once with a message that says why and what to do instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARA_", "DATABRICKS_"))}
    env |= {"DARA_TRUST_FORWARDED_USER": "true", "DARA_STATE_DIR": str(tmp_path), "DARA_PORT": "0"}

    started = subprocess.run(
        [sys.executable, "-m", "app"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )

    assert started.returncode == 2, started.stderr
    assert "DARA_TRUST_FORWARDED_USER=true is only safe behind the Databricks Apps proxy" in started.stderr
    assert "DATABRICKS_APP_NAME and DATABRICKS_APP_PORT are not set" in started.stderr
    assert "Traceback" not in started.stderr


def test_the_setting_is_accepted_inside_the_apps_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pydantic.ValidationError, match="only safe behind the Databricks Apps proxy"):
        make_settings(tmp_path, trust_forwarded_user=True)
    for name, value in APPS_RUNTIME.items():
        monkeypatch.setenv(name, value)
    assert make_settings(tmp_path, trust_forwarded_user=True).trust_forwarded_user is True


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """As a Databricks App, with a token for automation and one admin."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in APPS_RUNTIME.items():
            env.setenv(name, value)
        settings = make_settings(
            tmp_path_factory.mktemp("identity"),
            deploy_on_start=False,
            api_token=TOKEN,
            trust_forwarded_user=True,
            admins="boss@example.com",
        )
        with running_service(settings) as svc:
            yield svc


def start(app: Service, run_id: str, headers: dict[str, str]) -> dict:
    started = app.http.post("/runs", json={"pipeline": "waits_for_callback", "id": run_id}, headers=headers)
    assert started.status_code == 201, started.text
    return started.json()


def test_a_run_records_who_started_it_in_the_api_and_the_pages(app: Service) -> None:
    by_ada = start(app, "id-ada", ADA)
    by_token = start(app, "id-token", BEARER)
    again = app.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "id-ada"}, headers=BOB)

    assert (by_ada["started_by"], by_token["started_by"]) == ("ada@example.com", "api-token")
    assert again.status_code == 200 and again.json()["started_by"] == "ada@example.com"  # the first start's
    assert app.http.get("/runs/id-ada", headers=BOB).json()["started_by"] == "ada@example.com"
    assert "started by ada@example.com" in app.http.get("/ui/runs/id-ada", headers=BOB).text
    assert "<td>ada@example.com</td>" in app.http.get("/ui", headers=BOB).text


def test_only_the_owner_or_an_admin_may_cancel(app: Service) -> None:
    start(app, "id-mine", ADA)
    start(app, "id-boss", ADA)
    app.wait_until("id-mine", "waiting", headers=ADA)

    by_bob = app.http.post("/runs/id-mine/cancel", headers=BOB)
    by_token = app.http.post("/runs/id-mine/cancel", headers=BEARER)
    still = app.http.get("/runs/id-mine", headers=ADA).json()["status"]
    by_ada = app.http.post("/runs/id-mine/cancel", headers=ADA)
    by_boss = app.http.post("/runs/id-boss/cancel", headers=BOSS)

    assert (by_bob.status_code, by_token.status_code) == (403, 403)
    assert by_bob.json()["detail"] == (
        "run 'id-mine' was started by 'ada@example.com', not you ('bob@example.com'); only they "
        "or one of DARA_ADMINS may cancel it"
    )
    assert by_token.json()["detail"].startswith("run 'id-mine' was started by 'ada@example.com', not you ("), (
        by_token.text
    )
    assert still == "waiting"
    assert by_ada.status_code == 200 and by_ada.json()["run"]["status"] == "cancelled"
    assert by_boss.status_code == 200 and by_boss.json()["run"]["status"] == "cancelled"
