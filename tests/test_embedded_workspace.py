"""The embedded workspace and the idempotent deploy of notebooks/ and the demo job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from app.workspace.client import workspace_client
from app.workspace.deploy import deploy_demo
from app.workspace.embedded import EmbeddedWorkspace
from tests.harness import make_settings


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[WorkspaceClient]:
    with EmbeddedWorkspace(tmp_path / "workspace") as embedded:
        yield workspace_client(make_settings(tmp_path), embedded)


def test_second_deploy_changes_nothing(workspace: WorkspaceClient, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = deploy_demo(workspace, "/Workspace/Shared/dara", "dara-demo")
    resets: list[int] = []
    monkeypatch.setattr(workspace.jobs, "reset", lambda job_id, settings: resets.append(job_id))

    assert deploy_demo(workspace, "/Workspace/Shared/dara", "dara-demo") == job_id
    assert resets == []
    assert [job.job_id for job in workspace.jobs.list(name="dara-demo")] == [job_id]


def test_a_changed_job_is_reset_in_place(workspace: WorkspaceClient) -> None:
    job_id = deploy_demo(workspace, "/Workspace/Shared/dara", "dara-demo")
    settings = workspace.jobs.get(job_id).settings
    assert settings is not None and settings.tasks
    settings.tasks[0].timeout_seconds = 60
    workspace.jobs.reset(job_id, settings)

    assert deploy_demo(workspace, "/Workspace/Shared/dara", "dara-demo") == job_id
    restored = workspace.jobs.get(job_id).settings
    assert restored is not None and restored.tasks and restored.tasks[0].timeout_seconds == 3600
    assert [job.job_id for job in workspace.jobs.list(name="dara-demo")] == [job_id]


def test_runs_are_listed_per_job_across_resets(workspace: WorkspaceClient) -> None:
    job_id = deploy_demo(workspace, "/Workspace/Shared/dara", "dara-demo")
    first = workspace.jobs.run_now(job_id=job_id, idempotency_token="t-1").run_id
    settings = workspace.jobs.get(job_id).settings
    assert settings is not None and settings.tasks
    settings.tasks[0].timeout_seconds = 120
    workspace.jobs.reset(job_id, settings)
    second = workspace.jobs.run_now(job_id=job_id, idempotency_token="t-2").run_id

    assert sorted(run.run_id for run in workspace.jobs.list_runs(job_id=job_id)) == sorted([first, second])
    assert list(workspace.jobs.list(name="no-such-job")) == []
