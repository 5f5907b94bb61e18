"""Runs on Postgres (resonate-pg): listed and paged, nothing left pending, old runs
deleted, and one embedded workspace per database. Real Postgres, real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from resonate.timing import now_ms

from app.durable.postgres_backend import PoolSessions
from app.durable.run_index import PostgresRunIndex
from app.runtime import Runtime
from app.workspace.embedded import LOCAL_TOKEN
from app.workspace.embedded_claim import EmbeddedWorkspaceTaken
from tests.harness import Service, make_settings, running_service, sign


def pending(dsn: str, origin: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id FROM resonate.promises WHERE origin_id = %s AND state = 'pending'", (origin,)
        ).fetchall()
    return [row[0] for row in rows]


def await_nothing_pending(dsn: str, origin: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while left := pending(dsn, origin):
        if time.monotonic() > deadline:
            raise AssertionError(f"{origin} still has pending promises: {left}")
        time.sleep(0.2)


@pytest.fixture
def service(postgres_dsn: str, tmp_path: Path) -> Iterator[Service]:
    with running_service(make_settings(tmp_path, postgres_dsn=postgres_dsn)) as svc:
        yield svc


def start(service: Service, run_id: str, pipeline: str = "waits_for_callback", **params: object) -> None:
    started = service.http.post("/runs", json={"pipeline": pipeline, "id": run_id, "params": params})
    assert started.status_code == 201, started.text


def test_runs_are_listed_newest_first_a_page_at_a_time(service: Service) -> None:
    for run_id in ("list-a", "list-b", "list-c"):
        start(service, run_id)
    service.http.post("/resolve", json={"id": "list-b:1", "value": 1, "token": sign(service.http, "list-b:1")})
    service.wait_for("list-b")

    first = service.http.get("/runs", params={"limit": 2}).json()
    second = service.http.get("/runs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    done = service.http.get("/runs", params={"status": "done"}).json()
    bad = service.http.get("/runs", params={"cursor": "not-ours"})
    huge = service.http.get("/runs", params={"cursor": "9" * 30 + ".list-a"})  # past a bigint
    page = service.http.get("/ui")

    assert [run["id"] for run in first["runs"]] == ["list-c", "list-b"]
    assert [run["id"] for run in second["runs"]] == ["list-a"] and second["next_cursor"] is None
    assert [run["id"] for run in done["runs"]] == ["list-b"]
    assert bad.status_code == 422 and "is not one this server issued" in bad.json()["detail"]
    assert huge.status_code == 422, huge.text
    assert huge.json()["detail"] == f"cursor {'9' * 30 + '.list-a'!r} is not one this server issued; start without one"
    assert page.status_code == 200 and 'href="/ui/runs/list-a"' in page.text


def test_a_start_learns_it_created_its_run_from_the_create_itself(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create's reply carries the run as stored, with its creator's incarnation: a
    start answers from it, without a second round trip to read the run back."""
    backend = service.runtime.network
    real_send = backend.send
    sent: list[tuple[str, str]] = []

    async def recording_send(req: str, headers: dict[str, str] | None = None) -> str:
        envelope = json.loads(req)
        sent.append((envelope["kind"], envelope.get("data", {}).get("id", "")))
        return await real_send(req, headers)

    monkeypatch.setattr(backend, "send", recording_send)
    first = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "from-create"})
    reads_by_first = [kind for kind, id in sent if kind == "promise.get" and id == "from-create"]
    again = service.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "from-create"})

    assert ("task.create", "") in sent, "the run was not created through the recorded backend"
    assert first.status_code == 201 and first.json()["id"] == "from-create", first.text
    assert first.json()["status"] in {"running", "waiting"}
    assert reads_by_first == [], "the start read back the run its create already returned"
    assert again.status_code == 200 and again.json()["incarnation"] == first.json()["incarnation"], again.text
    assert backend.create_replies._replies == {}, "a start left its create reply behind"


def test_a_finished_run_leaves_nothing_pending(service: Service, postgres_dsn: str) -> None:
    """No watchdog per wait (Postgres times waits out itself), and the run watcher stops
    once the wait is settled: 200 runs used to leave 400 pending promises."""
    start(service, "leak-demo", "notebook_job", job="dara-demo")
    start(service, "leak-wait", timeout_seconds=600)
    service.http.post("/resolve", json={"id": "leak-wait:1", "value": 1, "token": sign(service.http, "leak-wait:1")})

    assert service.wait_for("leak-demo")["status"] == "done"
    assert service.wait_for("leak-wait")["status"] == "done"
    await_nothing_pending(postgres_dsn, "leak-wait")
    await_nothing_pending(postgres_dsn, "leak-demo")


def test_a_wait_past_its_deadline_is_timed_out_by_postgres(service: Service, postgres_dsn: str) -> None:
    start(service, "pg-deadline", timeout_seconds=1)

    run = service.wait_for("pg-deadline")

    assert run["status"] == "timed_out" and "nothing settled pg-deadline:1 by its deadline" in run["error"]
    assert [step["kind"] for step in run["steps"]] == ["callback"]  # no watchdog was needed
    assert pending(postgres_dsn, "pg-deadline") == []


def test_a_callback_value_is_stored_by_its_wait_and_the_run_that_returns_it_only(
    service: Service, postgres_dsn: str
) -> None:
    """Two copies are inherent when a pipeline returns what its callback sent: the wait's
    value and the root promise's. DARA adds none: no step, watcher, tag or parameter
    carries the value again."""
    start(service, "stored-once")
    service.wait_until("stored-once", "waiting")
    value = "s" * 300_000
    service.http.post(
        "/resolve", json={"id": "stored-once:1", "value": value, "token": sign(service.http, "stored-once:1")}
    )
    service.wait_for("stored-once")

    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT id, coalesce(octet_length(param_data), 0) + coalesce(octet_length(value_data), 0)"
            " + octet_length(param_headers::text) + octet_length(value_headers::text) + octet_length(tags::text)"
            " FROM resonate.promises WHERE origin_id = 'stored-once'"
        ).fetchall()
    sizes = dict(rows)

    # Each copy is the value's JSON, base64-encoded: a third larger.
    copy = len(value) * 4 / 3
    assert {promise for promise, size in sizes.items() if size > copy / 2} == {"stored-once", "stored-once:1"}
    assert sum(sizes.values()) < 2 * copy + 10_000


async def purge_runs(dsn: str, settled_before_ms: int) -> int:
    """PostgresRunIndex.purge on a pool of its own, as the backend lends it its pool."""
    sessions = PoolSessions(dsn, timeout=2)
    try:
        return await PostgresRunIndex(sessions).purge(settled_before_ms)
    finally:
        await sessions.close()


def test_runs_past_the_retention_are_deleted_and_others_kept(service: Service, postgres_dsn: str) -> None:
    start(service, "old-done")
    start(service, "old-waiting")
    service.http.post("/resolve", json={"id": "old-done:1", "value": 1, "token": sign(service.http, "old-done:1")})
    service.wait_for("old-done")
    await_nothing_pending(postgres_dsn, "old-done")

    deleted = asyncio.run(purge_runs(postgres_dsn, now_ms() + 1))

    assert deleted == 1
    assert service.http.get("/runs/old-done").status_code == 404
    assert service.http.get("/runs/old-waiting").json()["status"] in ("running", "waiting")
    with psycopg.connect(postgres_dsn) as conn:
        left = conn.execute("SELECT count(*) FROM resonate.promises WHERE origin_id = 'old-done'").fetchone()
    assert left == (0,)


@pytest.mark.anyio
async def test_one_embedded_workspace_per_database(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second worker that would start its own embedded workspace is refused, and told
    the first one's URL; pointed at it, the second worker starts and sees its jobs."""
    monkeypatch.setenv("DATABRICKS_TOKEN", LOCAL_TOKEN)  # the embedded workspace takes any
    first = await Runtime.start(make_settings(tmp_path / "first", postgres_dsn=postgres_dsn))
    try:
        assert first.embedded is not None
        with pytest.raises(EmbeddedWorkspaceTaken) as refused:
            await Runtime.start(make_settings(tmp_path / "second", postgres_dsn=postgres_dsn, deploy_on_start=False))
        shared = make_settings(
            tmp_path / "third", postgres_dsn=postgres_dsn, deploy_on_start=False, databricks_host=first.embedded.host
        )
        second = await Runtime.start(shared)
        try:
            jobs = [job.settings.name for job in second.workspace.jobs.list() if job.settings]
        finally:
            await second.stop()
    finally:
        await first.stop()

    assert f"set DATABRICKS_HOST={first.embedded.host}" in str(refused.value)
    assert second.embedded is None and "dara-demo" in jobs
