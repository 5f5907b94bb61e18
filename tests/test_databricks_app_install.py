"""A clean install of the App the way the Databricks Apps runtime makes it: uv, from uv.lock.

The Apps runtime gives apps Python 3.11 unless they bring a uv project (pyproject.toml
and uv.lock, no requirements.txt): then uv installs it, on the Python the project asks
for. app.yaml's command -- ``uv run --frozen --python 3.12 python -m app`` -- is run here
unchanged, in a fresh copy of the App's source, with the uv the runtime has (0.10.2,
a test dependency). Where the runtime would download a Python 3.12, this machine cannot
(no such downloads here), so the 3.12 that runs these tests is put first on PATH and
downloads are forbidden. What this proves: the lock installs from PyPI into an empty
environment, the base dependencies are enough to serve (no emulator, no test tools),
and DARA comes up on 0.0.0.0 at the port from the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from app.settings import PROJECT_ROOT
from app.workspace.embedded import LOCAL_TOKEN, EmbeddedWorkspace
from tests.test_databricks_app import free_port, listening_addresses

#: What the App needs of the source tree (the bundle uploads it all; tests and docs aside).
APP_SOURCE = (
    "app",
    "pipelines",
    "steps",
    "notebooks",
    "examples",
    "pyproject.toml",
    "uv.lock",
    "README.md",
    "app.yaml",
)


def python_312_dir() -> str:
    """A folder with a working ``python3.12``, for uv to find as the runtime would download one."""
    candidates = [
        Path(sys.base_prefix) / "bin",
        *sorted(Path.home().glob(".pyenv/versions/3.12*/bin")),
        Path("/usr/local/bin"),
        Path("/usr/bin"),
    ]
    for folder in candidates:
        python = folder / "python3.12"
        if python.exists() and subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0:
            return str(folder)
    pytest.skip("no Python 3.12 on this machine, and uv may not download one here")


def uv_environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), python_312_dir(), os.environ.get("PATH", "")])
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DARA_", "DATABRICKS_", "RESONATE_", "VIRTUAL_ENV", "UV_"))
    }
    return {**inherited, "PATH": path, "UV_PYTHON_DOWNLOADS": "never", **extra}


def copy_source(into: Path) -> Path:
    for name in APP_SOURCE:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, into / name)
    return into


def test_the_apps_command_installs_and_serves_from_an_empty_environment(tmp_path: Path) -> None:
    source = copy_source(tmp_path / "app-source")
    command = yaml.safe_load((source / "app.yaml").read_text())["command"]
    port = free_port()
    with EmbeddedWorkspace(tmp_path / "workspace") as workspace:
        env = uv_environment(
            DATABRICKS_APP_NAME="dara-install",
            DATABRICKS_APP_PORT=str(port),
            DATABRICKS_HOST=workspace.host,
            DATABRICKS_TOKEN=LOCAL_TOKEN,
            DARA_PUBLIC_URL=f"http://127.0.0.1:{port}",
            DARA_CALLBACK_SECRET="install-test-secret-0123456789",
            DARA_DEPLOY_ON_START="false",
            DARA_STATE_DIR=str(tmp_path / "state"),
        )
        log = tmp_path / "app.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=source, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300  # a first install downloads every wheel from PyPI
            health = None
            while health is None:
                assert process.poll() is None, f"the App exited with {process.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"the App did not come up:\n{log.read_text()}"
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                except httpx.TransportError:
                    time.sleep(0.2)
            addresses = listening_addresses(port)
        finally:
            process.terminate()
            process.wait(30)

    assert health.status_code == 200, health.text
    assert health.json()["workspace"] == "databricks"
    assert addresses == {"0.0.0.0"}
    config = (source / ".venv" / "pyvenv.cfg").read_text()
    version = next(
        line.split("=")[1].strip() for line in config.splitlines() if line.startswith(("version_info", "version "))
    )
    assert tuple(map(int, version.split(".")[:2])) == (3, 12), config
    site = next((source / ".venv" / "lib").glob("python3.*/site-packages"))
    assert not list(site.glob("brickhouse*")), "the App's install pulled in the embedded workspace"


def older_python() -> str | None:
    """An interpreter older than 3.12, such as the Apps runtime's default 3.11."""
    for candidate in ("/usr/bin/python3.11", "/usr/bin/python3", shutil.which("python3.11")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info < (3, 12))"], capture_output=True, text=True
            )
            if probe.returncode == 0 and probe.stdout.strip() == "True":
                return candidate
    return None


def test_the_lock_will_not_install_on_the_runtimes_default_python(tmp_path: Path) -> None:
    """Why app.yaml goes through uv: on the runtime's Python 3.11 the project cannot run,
    and uv says so instead of installing it."""
    python = older_python()
    if python is None:
        pytest.skip("no Python older than 3.12 on this machine to try")
    source = copy_source(tmp_path / "app-source")
    refused = subprocess.run(
        [str(Path(sys.executable).with_name("uv")), "sync", "--frozen", "--python", python],
        cwd=source,
        env=uv_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert ">=3.12" in refused.stderr, refused.stderr
