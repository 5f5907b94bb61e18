"""DARA_RUN_RETENTION on the in-process server: finished runs are forgotten, others kept.

The SDK's in-process server never deletes anything, so a long-lived service would keep
every run it ever ran. The service's collection loop (``Runtime.collect_old_runs``)
purges it as it purges resonate-pg's table on Postgres (``tests/test_postgres_runs.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from resonate.resonate import Resonate
from resonate.retry import Never
from resonate.types import Value

import app.runtime
from app.durable import Context, WaitDefaults, drive
from app.durable.in_process import IndexedServerState, InProcessServer
from app.durable.run_index import InProcessRunIndex
from tests.harness import Service, make_settings, running_service


def of_run(state: IndexedServerState, run_id: str) -> dict[str, list[str]]:
    """Whatever the server keeps for ``run_id``, by table; empty lists when it kept nothing."""
    promises = [p.id for p in state.promises.values() if p.tags.get("resonate:origin", p.id) == run_id]
    ours = set(promises)
    return {
        "promises": promises,
        "tasks": [t for t in state.tasks if t in ours],
        "deadlines": [t for t in (*state.p_timeouts.keys(), *state.t_timeouts.keys()) if t in ours],
        "branches": [b for b in state.promises.branches if b in ours],
        "awaiting": [t for t in state.awaiting if t in ours],
    }


def start(service: Service, run_id: str, pipeline: str, **params: object) -> None:
    started = service.http.post("/runs", json={"pipeline": pipeline, "id": run_id, "params": params})
    assert started.status_code == 201, started.text


def test_a_finished_run_past_the_retention_is_deleted_and_a_pending_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no retention and the loop coming round often, a finished run -- a notebook job,
    with its steps, its callback and its run watcher -- is gone from the API and from the
    server's tables; a waiting run, older than it, is untouched."""
    monkeypatch.setattr(app.runtime, "COLLECT_EVERY_SECONDS", 0.05)
    with running_service(make_settings(tmp_path, run_retention=timedelta(0))) as service:
        state = service.runtime.local_server.state  # type: ignore[union-attr]
        start(service, "kept-waiting", "waits_for_callback")
        start(service, "gone-done", "notebook_job", job="dara-demo", params={"name": "old", "count": "3"})

        deadline = time.monotonic() + 60
        while (gone := service.http.get("/runs/gone-done")).status_code != 404:
            # Done, it stays until its run watcher has had its last look: then it goes.
            assert gone.json()["status"] in ("running", "waiting", "done"), gone.json()
            assert time.monotonic() < deadline, f"the finished run was not deleted: {gone.json()}"
            time.sleep(0.05)
        kept = service.http.get("/runs/kept-waiting")
        listed = service.http.get("/runs").json()
        left = of_run(state, "gone-done")
        still = of_run(state, "kept-waiting")
        again = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "gone-done"})

    assert gone.json()["detail"].startswith("no run 'gone-done'"), gone.text  # as for any unknown run
    assert left == {"promises": [], "tasks": [], "deadlines": [], "branches": [], "awaiting": []}
    assert kept.status_code == 200 and kept.json()["status"] == "waiting", kept.text
    assert still["promises"] == ["kept-waiting", "kept-waiting:1"] and still["tasks"] == ["kept-waiting"]
    assert [run["id"] for run in listed["runs"]] == ["kept-waiting"]
    assert again.status_code == 201, again.text  # the id is free again: a new run
    assert again.json()["id"] == "gone-done" and again.json()["status"] in ("running", "waiting"), again.text


def waits(ctx: Context) -> Generator[Any, Any, Any]:
    return (yield ctx.promise())


@pytest.mark.anyio
async def test_a_run_is_kept_until_it_ended_before_the_cutoff() -> None:
    """The cutoff is when the run ended: a run that ended at it is kept, one that ended
    before it is purged; a run that has not ended is kept at any cutoff."""
    server = InProcessServer(group="dara")
    resonate = Resonate(network=server, retry_policy=Never())
    resonate.with_dependency(WaitDefaults(backend_times_out=True))  # this server times waits out
    resonate.register(drive(waits), name="waits")
    index = InProcessRunIndex(server)
    try:
        ended, waiting = resonate.run("ended", "waits"), resonate.run("waiting", "waits")
        await waiting.id()
        async with asyncio.timeout(10):  # the server has no event for a promise being created
            while "ended:1" not in server.state.promises:
                await asyncio.sleep(0)
        await resonate.promises.resolve("ended:1", Value(data=1))
        assert await ended.result() == 1
        settled_at = server.state.promises["ended"].settled_at
        assert settled_at is not None

        at_the_end = await index.purge(settled_at)
        after_it = await index.purge(settled_at + 1)
        never = await index.purge(2**62)
    finally:
        await resonate.stop()

    assert (at_the_end, after_it, never) == (0, 1, 0)
    assert of_run(server.state, "ended")["promises"] == []
    assert of_run(server.state, "waiting")["promises"] == ["waiting", "waiting:1"]
