"""An export survives a restart of the service with no file state of its own: on
Postgres, the service is stopped mid-export and started again on the same database,
and the export carries on from the next item -- the items done before the restart are
not exported again -- to the end."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

import steps.export
from tests.harness import Service, make_settings, running_service
from tests.workspace_items import make_job

LEASE = timedelta(seconds=2)
ITEMS = 6
#: Items the first service exports; it is stopped in the middle of the next one.
BEFORE_THE_STOP = 2
#: The folder an exported item's files go to: ``<start path>/jobs/<name>-<id>``.
ITEM_FOLDER = re.compile(r"^(.*/jobs/[^/]+)/")


def progress(service: Service, run_id: str) -> dict:
    return service.http.get(f"/exports/{run_id}").raise_for_status().json()


def item_steps(service: Service, run_id: str) -> dict[str, str]:
    """Each finished export step's promise id -> when it finished."""
    run = service.http.get(f"/runs/{run_id}").raise_for_status().json()
    return {s["id"]: s["finished_at"] for s in run["steps"] if s["name"] == "export_job" and s["finished_at"]}


def test_an_export_carries_on_after_a_restart(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path / "state", postgres_dsn=postgres_dsn, lease=LEASE)
    write = steps.export.write
    writes: list[str] = []
    items: list[str] = []
    held, stopping, stopped = threading.Event(), threading.Event(), threading.Event()

    def held_from_the_next_item(w: object, path: str, content: object) -> str:
        """Writes the first items' files. The next item's wait for the service to begin
        stopping, so the stop finds that item in flight; any later item's, for it to
        have stopped, so the first service cannot get past that item."""
        writes.append(path)
        found = ITEM_FOLDER.match(path)
        assert found, f"{path} is not in an item's folder"
        if found[1] not in items:
            items.append(found[1])
        if items.index(found[1]) == BEFORE_THE_STOP:
            held.set()
            assert stopping.wait(60), "the service was never stopped"
        elif items.index(found[1]) > BEFORE_THE_STOP:
            assert stopped.wait(60), "the service never stopped"
        return write(w, path, content)  # type: ignore[arg-type]

    monkeypatch.setattr(steps.export, "write", held_from_the_next_item)
    with running_service(settings) as first:
        real_stop = first.runtime.stop

        async def stop_with_an_item_in_flight() -> None:
            stopping.set()
            try:
                await real_stop()
            finally:
                stopped.set()

        monkeypatch.setattr(first.runtime, "stop", stop_with_an_item_in_flight)
        w = first.runtime.workspace
        jobs = [(make_job(w, f"job_{index}"), f"job_{index}") for index in range(ITEMS)]
        config = {
            "workflows": [{"job_name": name, "job_id": job_id} for job_id, name in jobs],
            "initial_variables": {"v_start_path": "/Workspace/Shared/restart"},
        }
        assert first.http.put("/exports/config", json={"yaml": yaml.safe_dump(config)}).status_code == 200
        run_id = first.http.post("/exports", json={}).raise_for_status().json()["run_id"]
        assert held.wait(60), f"the export never reached item {BEFORE_THE_STOP + 1}: {progress(first, run_id)}"
        before = item_steps(first, run_id)
    assert len(before) == BEFORE_THE_STOP, before
    monkeypatch.undo()
    written_before = len(writes)

    with running_service(settings) as second:
        run = second.wait_for(run_id, timeout=120)
        after = item_steps(second, run_id)
        final = progress(second, run_id)
        folders = [
            second.runtime.workspace.workspace.get_status(f"/Workspace/Shared/restart/jobs/{name}-{job_id}/job.json")
            for job_id, name in jobs
        ]

    assert run["status"] == "done", run
    assert (final["done"], final["total"]) == (ITEMS, ITEMS)
    assert all(after[step] == finished for step, finished in before.items())  # not exported again
    assert len(after) == ITEMS and all(folder.object_type is not None for folder in folders)
    assert written_before < 2 * ITEMS  # the first service really stopped part way
