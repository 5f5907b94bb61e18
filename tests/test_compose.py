"""docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker engine.

Compose is read the way ``docker compose`` reads it (``${VAR:-default}`` resolved
against the caller's environment, empty here unless a test says otherwise), and the
environment it gives DARA is fed to the real ``Settings`` to prove the names are ones
DARA reads.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

RESONATE_IMAGE = "resonatehqio/resonate:v0.9.8"
# Read by databricks-sdk itself, not by Settings.
READ_BY_OTHER_TOOLS = {"DATABRICKS_TOKEN"}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution, for the forms compose files use."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, default = match.group(2), match.group(3) or ""
        current = env.get(name)
        if operator == ":-":
            return current if current else default
        if operator == "-":
            return default if current is None else current
        if operator in (":?", "?"):
            if not current:
                raise ValueError(f"compose requires {name}: {default}")
            return current
        return current or ""

    return _VAR.sub(substitute, value)


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def published(service: Mapping[str, Any]) -> dict[str, str]:
    """Container port -> host port, from short ("[ip:]host:container[/proto]") syntax."""
    ports = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports[str(entry["target"])] = str(entry.get("published", ""))
            continue
        parts = str(entry).split("/")[0].split(":")
        ports[parts[-1]] = parts[-2] if len(parts) > 1 else ""
    return ports


def host_ips(service: Mapping[str, Any]) -> dict[str, str]:
    """Container port -> host address it is published on ("" means every interface)."""
    ips = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ips[str(entry["target"])] = str(entry.get("host_ip", ""))
            continue
        parts = str(entry).split("/")[0].split(":")
        ips[parts[-1]] = parts[-3] if len(parts) > 2 else ""
    return ips


def healthcheck_command(service: Mapping[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    out = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def plain(value: Any) -> Any:
    """A setting's value, unwrapped if it is a SecretStr."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def instruction(name: str) -> list[str]:
    return [args for keyword, args in dockerfile_instructions() if keyword == name]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Build Settings from exactly the given environment (no .env, nothing inherited)."""

    def build(env: Mapping[str, str]) -> Settings:
        for name in list(os.environ):
            if name.startswith(("DARA_", "RESONATE_", "DATABRICKS_")):
                monkeypatch.delenv(name)
        monkeypatch.chdir(tmp_path)  # Settings also reads ./.env
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Settings()

    return build


# -- the stack -------------------------------------------------------------------------


def test_the_three_services_exist(services: dict[str, Any]) -> None:
    assert {"postgres", "resonate", "dara"} <= set(services)


def test_every_image_is_pinned_to_an_exact_tag(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "image" not in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} floats"
    assert services["resonate"]["image"] == RESONATE_IMAGE
    # postgres: major.minor, not just a major that moves under you.
    assert re.fullmatch(r"postgres:16\.\d+", services["postgres"]["image"])


def test_resonate_serves_the_api_and_metrics(services: dict[str, Any]) -> None:
    resonate = services["resonate"]
    command = resonate["command"]
    assert "serve" in (command.split() if isinstance(command, str) else command)
    ports = published(resonate)
    assert ports.get("8001") == "8001"
    assert ports.get("9090") == "9090"


def test_resonate_is_published_on_loopback_only(services: dict[str, Any]) -> None:
    # The server runs with auth off: whoever reaches 8001 can read and settle every promise.
    ips = host_ips(services["resonate"])
    assert ips == {"8001": "127.0.0.1", "9090": "127.0.0.1"}


def test_resonate_stores_in_the_postgres_service(services: dict[str, Any]) -> None:
    env = environment(services["resonate"])
    db = environment(services["postgres"])
    assert env["RESONATE_STORAGE__TYPE"] == "postgres"
    url = urlsplit(env["RESONATE_STORAGE__POSTGRES__URL"])
    assert url.scheme in ("postgres", "postgresql")
    assert url.hostname == "postgres" and url.hostname in services
    assert url.port in (None, 5432)
    assert url.username == db["POSTGRES_USER"]
    assert url.password == db["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == db.get("POSTGRES_DB", db["POSTGRES_USER"])


def test_resonate_is_not_given_a_server_url_env_var(services: dict[str, Any]) -> None:
    # v0.9.3 was reported to parse it as an unknown CLI flag and exit with 2.
    assert "RESONATE_SERVER__URL" not in environment(services["resonate"])


def test_postgres_keeps_its_data_on_a_named_volume(compose: dict[str, Any]) -> None:
    mounts = [str(m).split(":") for m in compose["services"]["postgres"]["volumes"]]
    targets = {target: source for source, target, *_ in mounts}
    assert targets.get("/var/lib/postgresql/data") in compose["volumes"]
    # pg_isready checks the user and database the server is created with.
    db = environment(compose["services"]["postgres"])
    check = healthcheck_command(compose["services"]["postgres"])
    assert "pg_isready" in check and f"-U {db['POSTGRES_USER']}" in check


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), name
        assert healthcheck_command(service) not in ("NONE", "")


def test_dependencies_wait_for_healthy(services: dict[str, Any]) -> None:
    assert set(services["resonate"]["depends_on"]) == {"postgres"}
    assert set(services["dara"]["depends_on"]) == {"resonate"}
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: list form cannot wait for health"
        for dependency, spec in depends_on.items():
            assert spec.get("condition") == "service_healthy", (name, dependency)
            assert services[dependency].get("healthcheck"), dependency


# -- DARA ------------------------------------------------------------------------------


def test_dara_talks_to_the_resonate_service(services: dict[str, Any]) -> None:
    env = environment(services["dara"])
    assert env["RESONATE_URL"] == "http://resonate:8001"
    url = urlsplit(env["RESONATE_URL"])
    assert url.hostname in services and str(url.port) in published(services["resonate"])


def test_dara_listens_on_all_interfaces_and_publishes_8000(services: dict[str, Any]) -> None:
    dara = services["dara"]
    env = environment(dara)
    assert env["DARA_HOST"] == "0.0.0.0"
    assert published(dara).get(env.get("DARA_PORT", "8000")) == "8000"
    assert "build" in dara


def test_dara_keeps_state_on_a_volume(compose: dict[str, Any]) -> None:
    dara = compose["services"]["dara"]
    state_dir = environment(dara)["DARA_STATE_DIR"]
    mounts = {str(m).split(":")[1]: str(m).split(":")[0] for m in dara["volumes"]}
    assert mounts.get(state_dir) in compose["volumes"]


def test_dara_healthcheck_probes_health_on_its_port(services: dict[str, Any]) -> None:
    dara = services["dara"]
    test = dara["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], "<healthcheck>", "exec")  # valid Python
    port = environment(dara).get("DARA_PORT", "8000")
    assert f"127.0.0.1:{port}/health" in test[3]


def test_dara_environment_is_read_by_settings(services: dict[str, Any], settings_from) -> None:
    env = environment(services["dara"])
    settings = settings_from(env)
    assert settings.resonate_url == "http://resonate:8001"
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert str(settings.state_dir) == env["DARA_STATE_DIR"]
    assert settings.callback_base_url == "http://127.0.0.1:8000"
    # Optional pass-throughs left empty mean the embedded workspace and a generated key.
    assert settings.uses_embedded_workspace
    assert not plain(settings.callback_secret)


def test_dara_environment_names_are_settings_fields(services: dict[str, Any]) -> None:
    fields = Settings.model_fields
    aliases = set()
    for field in fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            aliases.update(c for c in field.validation_alias.choices if isinstance(c, str))
        elif isinstance(field.validation_alias, str):
            aliases.add(field.validation_alias)
    for name in environment(services["dara"]):
        if name in READ_BY_OTHER_TOOLS or name in aliases:
            continue
        assert name.startswith("DARA_") and name[5:].lower() in fields, name


def test_dara_passes_databricks_and_secret_through(settings_from) -> None:
    caller = {
        "DATABRICKS_HOST": "https://example.cloud.databricks.com",
        "DATABRICKS_TOKEN": "dapi-test",
        "DARA_CALLBACK_SECRET": "s3cret",
        "DARA_PUBLIC_URL": "https://dara.example.com",
    }
    env = environment(load_compose(caller)["services"]["dara"])
    assert env["DATABRICKS_TOKEN"] == "dapi-test"
    settings = settings_from(env)
    assert settings.databricks_host == "https://example.cloud.databricks.com"
    assert not settings.uses_embedded_workspace
    assert plain(settings.callback_secret) == "s3cret"
    assert settings.callback_base_url == "https://dara.example.com"


# -- the image -------------------------------------------------------------------------


def test_dockerfile_runs_the_service() -> None:
    (base,) = instruction("FROM")
    assert base.startswith("python:3.12")
    assert json.loads(instruction("CMD")[-1]) == ["python", "-m", "app"]
    assert "8000" in " ".join(instruction("EXPOSE")).split()
    assert any('".[local]"' in run and "pip install" in run for run in instruction("RUN"))


def test_dockerfile_runs_as_non_root_with_state_on_a_volume() -> None:
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0")
    env = " ".join(instruction("ENV"))
    match = re.search(r"DARA_STATE_DIR=(\S+)", env)
    assert match
    assert match.group(1) in json.loads(instruction("VOLUME")[-1])
    assert "DARA_HOST=0.0.0.0" in env


@pytest.fixture
def health_server() -> Iterator[dict[str, Any]]:
    """A stand-in /health on a free loopback port; set ``state["status"]``."""
    state: dict[str, Any] = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["port"] = server.server_port
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_dockerfile_healthcheck_passes_only_on_a_healthy_service(health_server) -> None:
    (check,) = instruction("HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]

    def probe() -> int:
        env = {"DARA_PORT": str(health_server["port"])}
        return subprocess.run([sys.executable, "-c", command[2]], env=env, timeout=30).returncode

    assert probe() == 0
    health_server["status"] = 503
    assert probe() != 0


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".venv", ".dara", "__pycache__", ".git", ".pytest_cache", ".env"} <= entries
