"""Every pipeline on the SDK's in-process test server, with fake steps: no HTTP, no workspace.

As Temporal's samples test each workflow with mocked activities, these run the real
pipeline body -- its order of durable operations, what it hands each step, what it does
with their results -- on ``resonate.testing.local_resonate``, wired as the service wires
a worker (app.wiring), with every step stood in for (``StepDoubles``) and the run
watcher replaced by one that records what it was asked to watch.

The fake ``run_job`` plays the notebook: it settles the wait it was handed, as the
callback cell does, so a wait that did not exist yet when the job started fails the run
as it would in production. The end-to-end tests (test_pipeline_library.py,
test_notebook_loop.py, test_deploy_and_run.py) run the same pipelines on real steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from resonate.resonate import Resonate
from resonate.testing import local_resonate
from resonate.types import Value

import pipelines.lakeflow_refresh
from app.durable import Context, Pipeline, StepDependencies, StepDoubles, StepError, pipeline
from app.watchers import EXPIRE, WATCH, expire_promise
from app.wiring import wire
from pipelines.deploy_and_run import deploy_and_run
from pipelines.export_workflows import export_workflows
from pipelines.job_callback import run_job_and_wait
from pipelines.lakeflow_refresh import lakeflow_refresh
from pipelines.notebook_job import notebook_job
from pipelines.sql_then_job import sql_then_job
from pipelines.upload_and_process import upload_and_process
from steps.export import ExportedItem, export_job, export_pipeline
from steps.files import UploadedFile
from steps.jobs import JobRun, run_job, upsert_job
from steps.lakeflow import PipelineUpdate, UpdateState, pipeline_update_state, start_pipeline_update
from steps.notify import notify
from steps.sql import QueryResult, run_sql
from steps.uploaded_files import discard_upload, upload_saved_file
from steps.vector_search import IndexSync, sync_vector_index
from steps.workspace_files import upload_task_files

pytestmark = pytest.mark.anyio

URL = "https://example.cloud.databricks.com"
#: What the fake notebook calls back with.
CALLED_BACK = {"greeting": "hello ada"}


@dataclass
class Worker:
    """A worker on the in-process test server, with fake steps that record their calls."""

    resonate: Resonate
    #: Every fake step's call, in order: (step name, arguments).
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: What the run watcher was asked to watch: (run, promise id, settle).
    watched: list[tuple[JobRun, str, bool]] = field(default_factory=list)

    def called(self, step: str) -> list[dict[str, Any]]:
        return [arguments for name, arguments in self.calls if name == step]

    def steps(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
async def worker() -> Any:
    resonate = local_resonate()
    try:
        yield Worker(resonate)
    finally:
        await resonate.stop()


#: Fake steps, by the step each stands in for.
type Doubles = Mapping[Any, Callable[..., Any]]


async def run(worker: Worker, declared: Pipeline, run_id: str, doubles: Doubles, **params: Any) -> Any:
    """Run ``declared`` as ``run_id`` with ``params``, its steps stood in for by ``doubles``."""

    def watch_run(
        ctx: Context, run: JobRun, promise_id: str, check: int = 0, settle: bool = False
    ) -> Generator[Any, Any, str]:
        """Records the watch; for a job that does not call back, ends the wait as the real
        watcher does when the run succeeds: resolved with the run's report."""
        worker.watched.append((run, promise_id, settle))
        if settle:
            yield ctx.run(settle_with_report, promise_id, run.run_id)
        return "watched"

    async def settle_with_report(promise_id: str, run_id: int) -> None:
        report = {"run_id": run_id, "result": "SUCCESS", "tasks": [{"task": "main", "result": "SUCCESS"}]}
        await worker.resonate.promises.resolve(promise_id, Value(data=report))

    wire(worker.resonate, [declared], StepDependencies(), watchers={EXPIRE: expire_promise, WATCH: watch_run})
    worker.resonate.with_dependency(StepDoubles(doubles))
    with anyio.fail_after(10):
        return await worker.resonate.run(run_id, declared.durable, **params).result()


def records(worker: Worker, name: str, result: Any = None) -> Callable[..., Any]:
    """A fake step that records its arguments and returns ``result``."""

    def fake(*args: Any, **kwargs: Any) -> Any:
        # The runner calls a step with every argument by name: ``*args`` arrives as ``args=``.
        positional = list(kwargs.pop("args", args))
        worker.calls.append((name, {"args": positional, **kwargs}))
        return result

    return fake


def fake_run_job(worker: Worker, *, run_id: int = 8) -> Callable[..., Any]:
    """``run_job`` whose notebook calls back at once with :data:`CALLED_BACK`."""

    async def run_job(
        job: str, params: dict[str, str], callback_to: str | None = None, callback_url: str | None = None
    ) -> JobRun:
        worker.calls.append(
            ("run_job", {"job": job, "params": params, "callback_to": callback_to, "callback_url": callback_url})
        )
        if callback_to is not None:  # the notebook's callback cell: the wait must exist by now
            await worker.resonate.promises.resolve(callback_to, Value(data=CALLED_BACK))
        return JobRun(job_id=7, run_id=run_id, url=f"{URL}/jobs/7/runs/{run_id}")

    return run_job


# -- the callback motif ------------------------------------------------------------------


async def test_run_job_and_wait_creates_the_wait_starts_the_job_with_its_id_then_watches_that_run(
    worker: Worker,
) -> None:
    @pipeline
    def motif(ctx: Context, job: str) -> Generator[Any, Any, Any]:
        started, value = yield from run_job_and_wait(ctx, job, {"day": "mon"})
        return {"run_id": started.run_id, "value": value}

    result = await run(worker, motif, "motif", {run_job: fake_run_job(worker)}, job="etl")

    assert result == {"run_id": 8, "value": CALLED_BACK}
    [started] = worker.called("run_job")
    assert started == {"job": "etl", "params": {"day": "mon"}, "callback_to": "motif:1", "callback_url": None}
    assert worker.watched == [(JobRun(7, 8, f"{URL}/jobs/7/runs/8"), "motif:1", False)]


async def test_watching_a_promise_that_is_not_a_wait_of_the_run_fails_the_run(worker: Worker) -> None:
    """The ordering rule, enforced where the watch is started: a watcher for a promise the
    run did not create (or has not created yet) would watch for nothing."""

    @pipeline
    def watches_too_early(ctx: Context) -> Generator[Any, Any, Any]:
        started = yield ctx.run(run_job, "etl", {})
        yield ctx.watch(started, "watches_too_early:9")
        return "watched"

    with pytest.raises(ValueError, match="'watches_too_early:9' is not a wait of this run"):
        await run(worker, watches_too_early, "watches_too_early", {run_job: fake_run_job(worker)})
    assert worker.watched == []


# -- one test (or two) per pipeline -----------------------------------------------------------


async def test_notebook_job_waits_for_the_notebook_then_notifies_with_its_value(worker: Worker) -> None:
    doubles = {run_job: fake_run_job(worker), notify: records(worker, "notify", True)}

    value = await run(
        worker, notebook_job, "nb", doubles, job="etl", params={"day": "mon"}, url="https://dara.example.com"
    )

    assert value == CALLED_BACK
    assert worker.steps() == ["run_job", "notify"]
    [started] = worker.called("run_job")
    assert started["callback_to"] == "nb:1" and started["callback_url"] == "https://dara.example.com"
    assert started["params"] == {"day": "mon"}
    [notified] = worker.called("notify")
    assert notified["args"] == ["etl finished: run 8", {"run": f"{URL}/jobs/7/runs/8", "value": CALLED_BACK}]


async def test_sql_then_job_hands_the_rows_to_the_job_as_json(worker: Worker) -> None:
    rows = QueryResult("st-1", ["id", "name"], ["LONG", "STRING"], [[1, "ada"], [2, None]], 2, False)
    doubles = {
        run_sql: records(worker, "run_sql", rows),
        run_job: fake_run_job(worker),
        notify: records(worker, "notify", True),
    }

    value = await run(
        worker, sql_then_job, "sql", doubles, warehouse_id="wh-1", statement="SELECT 1", job="etl", param="input"
    )

    assert value == CALLED_BACK
    assert worker.called("run_sql") == [{"args": ["wh-1", "SELECT 1"]}]
    [started] = worker.called("run_job")
    assert json.loads(started["params"]["input"]) == [[1, "ada"], [2, None]]
    [notified] = worker.called("notify")
    assert notified["args"][0] == "etl finished on 2 rows: run 8"
    assert notified["args"][1]["rows"] == 2


UPLOAD = "0123456789abcdef0123456789abcdef"
VOLUME = "/Volumes/main/default/landing/in.csv"


async def test_upload_and_process_discards_the_upload_once_the_volume_has_it_then_syncs_the_index(
    worker: Worker,
) -> None:
    doubles = {
        upload_saved_file: records(worker, "upload_saved_file", UploadedFile(VOLUME, 12)),
        discard_upload: records(worker, "discard_upload", True),
        run_job: fake_run_job(worker),
        sync_vector_index: records(worker, "sync_vector_index", IndexSync("main.default.idx", f"{URL}/idx", True)),
        notify: records(worker, "notify", True),
    }

    value = await run(
        worker,
        upload_and_process,
        "up",
        doubles,
        upload=UPLOAD,
        volume_path=VOLUME,
        job="etl",
        params={"sep": ","},
        index="main.default.idx",
    )

    assert value == CALLED_BACK
    assert worker.steps() == ["upload_saved_file", "discard_upload", "run_job", "sync_vector_index", "notify"]
    assert worker.called("discard_upload") == [{"args": [UPLOAD, "up"]}]
    assert worker.called("run_job")[0]["params"] == {"sep": ",", "file": VOLUME}
    assert worker.called("notify")[0]["args"][1]["index"] == f"{URL}/idx"


async def test_upload_and_process_discards_the_upload_when_it_could_not_reach_the_volume(worker: Worker) -> None:
    def refused(upload: str, volume_path: str, run_id: str) -> UploadedFile:
        raise PermissionError("the volume refused the file")

    doubles = {upload_saved_file: refused, discard_upload: records(worker, "discard_upload", True)}

    with pytest.raises(StepError, match="upload_saved_file: PermissionError: the volume refused the file"):
        await run(worker, upload_and_process, "up-refused", doubles, upload=UPLOAD, volume_path=VOLUME, job="etl")
    assert worker.steps() == ["discard_upload"]  # and no job ran on a file that is not there


async def test_lakeflow_refresh_polls_the_update_until_it_completes_then_runs_the_job(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipelines.lakeflow_refresh, "BACKOFF", (0.01,))
    states = iter([UpdateState("RUNNING", False, False, None), UpdateState("COMPLETED", True, False, None)])
    doubles = {
        start_pipeline_update: records(worker, "start_pipeline_update", PipelineUpdate("p-1", "u-1", f"{URL}/u-1")),
        pipeline_update_state: lambda pipeline_id, update_id: next(states),
        run_job: fake_run_job(worker),
        notify: records(worker, "notify", True),
    }

    value = await run(worker, lakeflow_refresh, "lf", doubles, pipeline_id="p-1", job="etl", full_refresh=True)

    assert value == CALLED_BACK
    assert worker.called("start_pipeline_update") == [{"args": ["p-1", True]}]
    assert worker.called("run_job")[0]["params"] == {"pipeline_id": "p-1", "update_id": "u-1"}
    assert worker.called("notify")[0]["args"][0] == "etl finished after update u-1: run 8"


async def test_lakeflow_refresh_runs_no_job_on_the_tables_of_a_failed_update(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipelines.lakeflow_refresh, "BACKOFF", (0.01,))
    doubles = {
        start_pipeline_update: records(worker, "start_pipeline_update", PipelineUpdate("p-1", "u-2", f"{URL}/u-2")),
        pipeline_update_state: records(worker, "state", UpdateState("FAILED", True, True, "table t: bad schema")),
        run_job: fake_run_job(worker),
    }

    with pytest.raises(Exception, match=r"Lakeflow update u-2 ended FAILED: table t: bad schema; see .*/u-2"):
        await run(worker, lakeflow_refresh, "lf-failed", doubles, pipeline_id="p-1", job="etl")
    assert "run_job" not in worker.steps()


JOB = {"name": "etl", "tasks": [{"task_key": "main", "notebook_task": {"notebook_path": "/Workspace/etl/main"}}]}


def deploy_doubles(worker: Worker) -> Doubles:
    return {
        upload_task_files: records(worker, "upload_task_files", {"main.py": "/Workspace/etl/main"}),
        upsert_job: records(worker, "upsert_job", 5),
        run_job: fake_run_job(worker),
    }


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (True, {"value": CALLED_BACK}),
        (False, {"run_id": 8, "result": "SUCCESS", "tasks": [{"task": "main", "result": "SUCCESS"}]}),
    ],
    ids=["notebooks-call-back", "the-run-ends-the-wait"],
)
async def test_deploy_and_run_uploads_upserts_runs_and_waits(
    worker: Worker, callback: bool, expected: dict[str, Any]
) -> None:
    params = {"folder": "etl", "files": {"main.py": "/Workspace/etl/main"}, "job": JOB, "callback": callback}

    result = await run(worker, deploy_and_run, f"deploy-{callback}", deploy_doubles(worker), **params)

    assert result == {"job_id": 5, "url": f"{URL}/jobs/7/runs/8", **expected}
    assert worker.steps() == ["upload_task_files", "upsert_job", "run_job"]
    [started] = worker.called("run_job")
    assert started["job"] == "5"
    assert started["callback_to"] == (f"deploy-{callback}:3" if callback else None)  # after two steps
    assert [settle for _, _, settle in worker.watched] == [not callback]


async def test_deploy_and_run_without_run_only_deploys(worker: Worker) -> None:
    params = {"folder": "etl", "files": {"main.py": "/Workspace/etl/main"}, "job": JOB, "run": False}

    assert await run(worker, deploy_and_run, "deploy-only", deploy_doubles(worker), **params) == {"job_id": 5}
    assert worker.steps() == ["upload_task_files", "upsert_job"]


async def test_export_workflows_exports_each_active_item_and_reports_the_ones_that_failed(worker: Worker) -> None:
    def exports_job(job_id: int, export_libraries: bool, start_path: str) -> ExportedItem:
        if job_id == 2:
            raise PermissionError("no CAN VIEW on job 2")
        return ExportedItem("job", str(job_id), f"job {job_id}", f"{start_path}/jobs/{job_id}")

    doubles = {
        export_job: exports_job,
        export_pipeline: lambda pipeline_id, export_libraries, start_path: ExportedItem(
            "pipeline", pipeline_id, "dlt", f"{start_path}/pipelines/{pipeline_id}"
        ),
    }
    params = {
        "initial_variables": {"v_start_path": "/Workspace/Shared/exports"},
        "workflows": [
            {"job_name": "one", "job_id": 1},
            {"job_name": "two", "job_id": 2},
            {"job_name": "off", "job_id": 3, "is_active": False},
        ],
        "pipelines": [{"pipeline_name": "dlt", "pipeline_id": "p-1"}],
    }

    result = await run(worker, export_workflows, "export", doubles, **params)

    assert result["start_path"] == "/Workspace/Shared/exports"
    assert [(item["kind"], item["id"]) for item in result["exported"]] == [("job", "1"), ("pipeline", "p-1")]
    assert [(item["id"], item["name"]) for item in result["failed"]] == [("2", "two")]
    assert "no CAN VIEW on job 2" in result["failed"][0]["error"]


def test_every_pipeline_the_service_runs_has_a_unit_test_here() -> None:
    """A pipeline added to pipelines.PIPELINES gets a test in this module too."""
    from pipelines import PIPELINES

    source = Path(__file__).read_text()
    untested = [p.name for p in PIPELINES if f"worker, {p.name}," not in source]
    assert untested == []
