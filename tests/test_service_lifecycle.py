"""Start-up wiring for each backend, and a clean, bounded shutdown with no orphans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from resonate.connections import HttpConnection
from resonate_pg import PostgresConnection

from app.durable.in_process import InProcessServer
from app.runtime import build_resonate
from app.workspace.client import workspace_client
from tests.harness import Service, make_settings, running_service


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (notebook workers run in their own sessions)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_shutdown_stops_running_notebooks_and_leaves_no_processes(tmp_path: Path) -> None:
    with running_service(make_settings(tmp_path)) as service:
        service.http.post("/runs", json={"pipeline": "notebook_job", "id": "shutdown", "params": {"job": "dara-demo"}})
        workers = wait_for_notebook_processes(service)
    assert workers, "the notebook should have been running when the service stopped"
    assert not [pid for pid in workers if alive(pid)]


def wait_for_notebook_processes(service: Service) -> set[int]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = {
            pid for pid in descendants(os.getpid()) if b"notebook_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        }
        if workers:
            return workers
        time.sleep(0.01)
    return set()


@pytest.mark.anyio
async def test_each_backend_setting_selects_its_connection(tmp_path: Path) -> None:
    cases = [
        (make_settings(tmp_path), InProcessServer),
        (make_settings(tmp_path, resonate_url="http://127.0.0.1:9"), HttpConnection),
        (make_settings(tmp_path, postgres_dsn="postgresql://u:p@127.0.0.1:9/db"), PostgresConnection),
    ]
    for settings, expected in cases:
        resonate = build_resonate(settings)
        try:
            assert isinstance(resonate._network, expected), settings
        finally:
            await resonate.stop()


def test_databricks_host_selects_a_real_workspace_through_unified_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")  # found by unified auth, not by DARA
    host = "http://127.0.0.1:9"  # nothing listens: the SDK's metadata probe gives up quickly
    settings = make_settings(tmp_path, databricks_host=host, databricks_retry_timeout=1)

    assert not settings.uses_embedded_workspace
    w = workspace_client(settings, embedded=None)
    assert (w.config.host, w.config.auth_type) == (host, "pat")
