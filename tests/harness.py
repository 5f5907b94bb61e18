"""Running the real service for tests: uvicorn on a free loopback port, in a thread.

Real HTTP end to end: tests talk to it with httpx, and the notebooks that the embedded
workspace runs call it back over HTTP, exactly as in production.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from app.callback_tokens import CallbackSigner
from app.durable import Pipeline
from app.main import create_app
from app.runtime import Runtime
from app.server import dara_server
from app.settings import Settings
from tests.pipelines_for_tests import WITH_TEST_PIPELINES

SECRET = "test-callback-secret-0123456789"
#: What the Databricks Apps runtime sets in every app; forwarded users are trusted only with it.
APPS_RUNTIME = {"DATABRICKS_APP_NAME": "dara-test", "DATABRICKS_APP_PORT": "8000"}


def callback_token(promise_id: str, incarnation: str, secret: str = SECRET) -> str:
    """The callback token DARA issues for ``promise_id`` in the run incarnation ``incarnation``."""
    return CallbackSigner(secret, "http://unused").token(promise_id, incarnation)


def sign(http: httpx.Client, promise_id: str, secret: str = SECRET) -> str:
    """The token the notebook of ``promise_id``'s run was given (bound to the run's incarnation,
    read from ``GET /runs/{run}``; no such run signs for none)."""
    run = http.get(f"/runs/{promise_id.partition(':')[0]}")
    if run.status_code not in (200, 404):
        raise AssertionError(f"cannot read the run of {promise_id} to sign for it: {run.status_code} {run.text}")
    incarnation = run.json()["incarnation"] if run.status_code == 200 else ""
    return callback_token(promise_id, incarnation, secret)


def make_settings(state_dir: Path, **overrides: object) -> Settings:
    """Embedded defaults, with a fixed secret, quick retries and run watchers that look
    every second. Overrides win: e.g. ``postgres_dsn=`` (a ``tests.postgres`` database)
    runs on Postgres."""
    values: dict[str, object] = {
        "state_dir": state_dir,
        "callback_secret": SECRET,
        "step_retry_delay": 0.05,
        "watch_interval": 1,
        "resonate_url": None,
        "postgres_dsn": None,
        "databricks_host": None,
        "databricks_profile": None,
        "notify_webhook_url": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Service:
    url: str
    http: httpx.Client
    app: FastAPI

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime

    def wait_for(self, run_id: str, timeout: float = 60) -> dict:
        """Long-poll GET /runs/{id} until the run has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.http.get(f"/runs/{run_id}", params={"wait": 10}).raise_for_status().json()
            if run["status"] not in ("running", "waiting"):
                return run
        raise TimeoutError(f"run {run_id} did not finish in {timeout}s")

    def wait_until(
        self,
        run_id: str,
        status: str,
        timeout: float = 30,
        *,
        also: Callable[[dict], bool] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict:
        """Poll GET /runs/{id} until the run reaches ``status`` (e.g. "waiting"), and ``also``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.http.get(f"/runs/{run_id}", headers=headers).raise_for_status().json()
            if run["status"] == status and (also is None or also(run)):
                return run
            time.sleep(0.02)
        raise TimeoutError(f"run {run_id} did not become {status!r} in {timeout}s: {run}")


@contextmanager
def running_service(
    settings: Settings, *, pipelines: Iterable[Pipeline] = WITH_TEST_PIPELINES, **server_options: object
) -> Iterator[Service]:
    """The service on its real uvicorn configuration (``server_options`` override it),
    running ``pipelines``: the service's own and the tests' (tests.pipelines_for_tests)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = settings.model_copy(update={"port": port, "public_url": url})
    app = create_app(settings, pipelines_to_run=pipelines)
    options: dict[str, object] = {"log_level": "warning", "lifespan": "on", **server_options}
    server = dara_server(app, settings, **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the service failed to start; see the log above")
            time.sleep(0.01)
        with httpx.Client(base_url=url, timeout=30) as http:
            yield Service(url, http, app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        listener.close()
