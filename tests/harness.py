"""Running the real service for tests: uvicorn on a free loopback port, in a thread.

Real HTTP end to end: tests talk to it with httpx, and the notebooks that the embedded
workspace runs call it back over HTTP, exactly as in production.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings

SECRET = "test-callback-secret-0123456789"


def make_settings(state_dir: Path, **overrides: object) -> Settings:
    """Embedded defaults, with a fixed secret and quick retries."""
    values: dict[str, object] = {
        "state_dir": state_dir,
        "callback_secret": SECRET,
        "step_retry_delay": 0.05,
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
        self, run_id: str, status: str, timeout: float = 30, *, also: Callable[[dict], bool] | None = None
    ) -> dict:
        """Poll GET /runs/{id} until the run reaches ``status`` (e.g. "waiting"), and ``also``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.http.get(f"/runs/{run_id}").raise_for_status().json()
            if run["status"] == status and (also is None or also(run)):
                return run
            time.sleep(0.02)
        raise TimeoutError(f"run {run_id} did not become {status!r} in {timeout}s: {run}")


@contextmanager
def running_service(settings: Settings) -> Iterator[Service]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = settings.model_copy(update={"port": port, "public_url": url})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
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
