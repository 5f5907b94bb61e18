"""The run watcher (app.watchers) on the Databricks HTTP double and the embedded workspace:

* its Databricks calls do not grow with the number of runs that wait: one listing of the
  active runs per interval, paged, and nothing per run;
* a run that dies without calling back still fails its wait;
* a run DARA stops waiting for -- its wait timed out, its pipeline failed -- is cancelled
  on Databricks, and the run view shows how each Databricks run ended;
* a notebook that ends with ``dbutils.notebook.exit(value)`` and never calls back
  resolves its wait with that value (per task for a job of several tasks).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as dbx_errors
from databricks.sdk.config import Config
from databricks.sdk.service import jobs
from databricks.sdk.service.jobs import RunResultState

import app.active_runs
import app.exit_values
import app.watchers
import app.workspace.client
from app.durable import Context, pipeline
from app.limits import depth_message, surrogate_message
from app.services.run_status import read_run
from app.workspace.deploy import demo_job_settings, import_notebooks
from app.workspace.embedded import LOCAL_TOKEN
from scripts.databricks_double import DatabricksDouble
from scripts.jobs_service_double import GET_RUN, JOB_ID, LIST_RUNS, PAGE_SIZE, JobsService
from steps.jobs import JobRun, run_job, upsert_job
from tests.harness import Service, make_settings, running_service
from tests.pipelines_for_tests import WITH_TEST_PIPELINES
from tests.test_faults import KillPoint, cluster

TEST_NOTEBOOKS = Path(__file__).parent / "notebooks"


# -- pipelines of these tests ---------------------------------------------------------


@pipeline
def watched_job(ctx: Context, job: str, wait_seconds: float | None = None) -> Generator[Any, Any, Any]:
    """Start ``job`` with a callback, watch it, and wait (``wait_seconds`` at most)."""
    done = ctx.promise(timedelta(seconds=wait_seconds) if wait_seconds else None)
    promise_id = yield done.id()
    run: JobRun = yield ctx.run(run_job, job, {}, callback_to=promise_id)
    yield ctx.watch(run, promise_id)
    return (yield done)


@pipeline(deadline=timedelta(seconds=8))
def watched_job_with_a_short_deadline(ctx: Context, job: str) -> Generator[Any, Any, Any]:
    """``watched_job``, in a run whose own deadline comes before anything calls back."""
    done = ctx.promise()
    promise_id = yield done.id()
    run: JobRun = yield ctx.run(run_job, job, {}, callback_to=promise_id)
    yield ctx.watch(run, promise_id)
    return (yield done)


def breaks(message: str) -> None:
    """A step that fails for good."""
    raise ValueError(message)


@pipeline
def watched_job_then_a_failing_step(ctx: Context, job: str) -> Generator[Any, Any, Any]:
    """Start ``job`` and watch it, then fail before its callback could come."""
    done = ctx.promise()
    promise_id = yield done.id()
    run: JobRun = yield ctx.run(run_job, job, {}, callback_to=promise_id)
    yield ctx.watch(run, promise_id)
    yield ctx.run(breaks, "the pipeline broke while its job ran")
    return (yield done)


#: The test service's pipelines and these.
RUN_WATCH_PIPELINES = (
    *WITH_TEST_PIPELINES,
    watched_job,
    watched_job_with_a_short_deadline,
    watched_job_then_a_failing_step,
)


# -- fixtures ---------------------------------------------------------------------------


class ManualClock:
    """The clock the active-runs listing is dated by; the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def on_double(
    double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> Iterator[tuple[Service, JobsService]]:
    monkeypatch.setenv("DATABRICKS_TOKEN", "test")
    monkeypatch.setattr(app.workspace.client, "Config", functools.partial(Config, http_timeout_seconds=5))
    monkeypatch.setattr(app.watchers, "GRACE_SECONDS", 0)
    jobs = JobsService(double, tasks=overrides.pop("tasks", ("notebook",)))
    settings = make_settings(
        tmp_path, databricks_host=double.url, deploy_on_start=False, databricks_retry_timeout=1, **overrides
    )
    with running_service(settings, pipelines=RUN_WATCH_PIPELINES) as service:
        yield service, jobs


@pytest.fixture
def watched(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Service, JobsService]]:
    """The service on the double, its watchers looking every half second."""
    with on_double(databricks_double, tmp_path, monkeypatch, watch_interval=0.5) as pair:
        yield pair


def start(service: Service, run_id: str, pipeline_name: str = "watched_job", **params: Any) -> None:
    body = {"pipeline": pipeline_name, "id": run_id, "params": {"job": str(JOB_ID), **params}}
    response = service.http.post("/runs", json=body)
    assert response.status_code == 201, response.text


def until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)
    return found


def databricks_run(service: Service, run_id: str) -> dict[str, Any]:
    """The run's one Databricks run, once its run_job step has recorded it."""
    [run] = until(
        lambda: service.http.get(f"/runs/{run_id}").raise_for_status().json()["databricks_runs"],
        f"{run_id} to start its Databricks run",
    )
    return run


def final_state(service: Service, run_id: str) -> str:
    """The Databricks run's state as the run view shows it, once its watcher recorded it."""
    return until(lambda: databricks_run(service, run_id)["state"], f"{run_id}'s Databricks run to end")


# -- cost: one listing per interval ------------------------------------------------------


def test_watching_costs_listing_pages_per_interval_not_calls_per_run(
    watched: tuple[Service, JobsService],
) -> None:
    """5 and then 50 runs wait, their watchers each looking many times per interval of
    the listing's clock: Databricks sees one listing per interval, of one page per 25
    active runs, and no run read on its own."""
    service, jobs = watched
    active = service.runtime.active_runs
    clock = ManualClock()
    active.clock = clock
    intervals = 3

    def next_interval(waiting: int) -> None:
        clock.now += active.interval
        looked = active.lookups
        until(lambda: active.lookups >= looked + 2 * waiting, f"{2 * waiting} looks in the interval")

    def calls_over_intervals(waiting: int) -> tuple[int, int]:
        until(lambda: len(jobs.active()) == waiting, f"{waiting} runs to start")
        next_interval(waiting)  # the first listing after they all started shows them all
        before = (jobs.calls(LIST_RUNS), jobs.calls(GET_RUN))
        for _ in range(intervals):
            next_interval(waiting)
        return jobs.calls(LIST_RUNS) - before[0], jobs.calls(GET_RUN) - before[1]

    for n in range(5):
        start(service, f"cost-{n}")
    few = calls_over_intervals(5)
    for n in range(5, 50):
        start(service, f"cost-{n}")
    many = calls_over_intervals(50)

    assert few == (intervals * math.ceil(5 / PAGE_SIZE), 0)
    assert many == (intervals * math.ceil(50 / PAGE_SIZE), 0)


def test_a_run_that_dies_without_calling_back_still_fails_its_wait(watched: tuple[Service, JobsService]) -> None:
    service, jobs = watched
    for n in range(3):
        start(service, f"dies-{n}")
    until(lambda: len(jobs.active()) == 3, "3 runs to start")
    until(lambda: service.runtime.active_runs.listings >= 2, "the watchers to list twice")
    read_before = len(jobs.double.requests_to("GET", GET_RUN))

    dead = databricks_run(service, "dies-1")["run_id"]
    jobs.end(dead, "FAILED", message="Cluster lost")
    run = service.wait_for("dies-1", timeout=60)

    assert run["status"] == "failed", run
    assert "ended FAILED without calling back" in run["error"]
    assert final_state(service, "dies-1") == "FAILED"
    others = [service.http.get(f"/runs/dies-{n}").json() for n in (0, 2)]
    assert [other["status"] for other in others] == ["waiting", "waiting"]
    # Read on their own since: only the run that ended (its look, its final look, its end).
    read = jobs.double.requests_to("GET", GET_RUN)[read_before:]
    assert {int(r.query["run_id"][0]) for r in read} == {dead}


# -- cancelling what nobody waits for ---------------------------------------------------


def test_a_wait_that_times_out_cancels_its_databricks_run(watched: tuple[Service, JobsService]) -> None:
    service, jobs = watched
    start(service, "times-out", wait_seconds=2)

    run = service.wait_for("times-out", timeout=30)

    assert run["status"] == "timed_out", run
    assert final_state(service, "times-out") == "CANCELED"
    [databricks] = jobs.runs.values()
    assert (databricks.life_cycle_state, databricks.result_state) == ("TERMINATED", "CANCELED")
    assert len(jobs.double.requests_to("POST", "/api/2.2/jobs/runs/cancel")) == 1


def test_a_failing_pipeline_cancels_its_databricks_run(watched: tuple[Service, JobsService]) -> None:
    service, jobs = watched
    start(service, "breaks", "watched_job_then_a_failing_step")

    run = service.wait_for("breaks", timeout=30)

    assert run["status"] == "failed" and "the pipeline broke" in run["error"], run
    assert final_state(service, "breaks") == "CANCELED"
    [databricks] = jobs.runs.values()
    assert databricks.result_state == "CANCELED"
    watcher = next(s for s in service.http.get("/runs/breaks").json()["steps"] if s["kind"] == "watcher")
    assert watcher["result"] == {
        "run_id": databricks.run_id,
        "state": "CANCELED",
        "wait": "rejected",
        "cancelled": True,
    }


def test_a_run_about_to_reach_its_deadline_cancels_its_databricks_run(
    watched: tuple[Service, JobsService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the run's deadline its watcher ends with it, so it cancels the Databricks run
    still going a margin before, and records how that run ended in time."""
    monkeypatch.setattr(app.watchers, "DEADLINE_MARGIN_SECONDS", 4.0)
    service, jobs = watched
    start(service, "deadline", "watched_job_with_a_short_deadline")

    run = service.wait_for("deadline", timeout=30)

    assert run["status"] == "timed_out", (run["error"], run["steps"])
    [databricks] = jobs.runs.values()
    assert databricks.result_state == "CANCELED"
    assert databricks_run(service, "deadline")["state"] == "CANCELED"


def test_a_run_that_succeeds_is_left_alone_and_shows_how_its_job_ended(
    watched: tuple[Service, JobsService],
) -> None:
    service, jobs = watched
    start(service, "succeeds")
    widgets = until(lambda: next(iter(jobs.runs.values()), None), "run-now").params
    resolved = service.http.post(
        "/resolve", json={"id": widgets["promise_id"], "value": 7, "token": widgets["callback_signature"]}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": widgets["promise_id"], "state": "resolved", "already_settled": False}
    assert service.wait_for("succeeds")["result"] == 7
    [databricks] = jobs.runs.values()
    jobs.end(databricks.run_id, "SUCCESS")

    assert final_state(service, "succeeds") == "SUCCESS"
    assert jobs.double.requests_to("POST", "/api/2.2/jobs/runs/cancel") == []


@pytest.mark.anyio
async def test_a_worker_killed_as_it_cancels_leaves_the_cancel_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers, one embedded workspace: a pipeline fails while its notebook runs,
    and the worker whose watcher goes to cancel the notebook's run dies before the
    cancel reaches Databricks. The other worker takes the watcher over and cancels."""
    point = KillPoint()
    async with cluster(tmp_path, monkeypatch, pipelines=RUN_WATCH_PIPELINES) as c:
        w = WorkspaceClient(host=c.workspace.host, token=LOCAL_TOKEN, auth_type="pat")
        paths = await asyncio.to_thread(import_notebooks, w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        job_id = await asyncio.to_thread(upsert_job, w, demo_job_settings("slow", paths["slow"], cluster=None))
        for worker in c.workers.values():
            hold_cancels(worker.name, worker.runtime.workspace, point)
        first = c.workers["first"]
        pipeline_ = first.runtime.pipelines["watched_job_then_a_failing_step"]
        await first.runtime.start_run("crash", pipeline_, {"job": str(job_id)}, started_by="test")

        victim = await point.wait_reached(timeout=60)
        survivor = await c.kill(victim, point)
        with anyio.fail_after(60):  # the dead worker's lease lapses, the survivor looks again
            while (run := await read_run(survivor.runtime.resonate, "crash")) is None or not (
                run.databricks_runs and run.databricks_runs[0].state
            ):
                await anyio.sleep(0.1)
        [databricks] = run.databricks_runs
        ended = await asyncio.to_thread(w.jobs.get_run, databricks.run_id)

    assert run.status == "failed" and "the pipeline broke" in (run.error or "")
    assert databricks.state == "CANCELED"
    assert ended.state is not None and ended.state.result_state == RunResultState.CANCELED


def hold_cancels(name: str, w: WorkspaceClient, point: KillPoint) -> None:
    """Hold the first ``jobs.cancel_run`` any worker makes until the test has killed it."""
    original = w.jobs.cancel_run

    def cancel_run(*args: Any, **kwargs: Any) -> Any:
        point.stop_here(name)  # raises WorkerKilled in the victim, once it is dead
        return original(*args, **kwargs)

    w.jobs.cancel_run = cancel_run  # type: ignore[method-assign]


# -- dbutils.notebook.exit --------------------------------------------------------------


def test_exit_values_resolve_the_wait_per_task(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job of two tasks ends SUCCESS without calling back: its wait gets each task's
    exit value by task key (JSON decoded; a plain string stays one). Without any exit
    value, the run fails as before."""
    with on_double(databricks_double, tmp_path, monkeypatch, watch_interval=0.5, tasks=("a", "b")) as (service, jobs):
        start(service, "exits")
        start(service, "exits-not")
        until(lambda: len(jobs.active()) == 2, "2 runs to start")
        exits, exits_not = (databricks_run(service, run)["run_id"] for run in ("exits", "exits-not"))
        jobs.end(exits, "SUCCESS", exit_values={"a": json.dumps({"rows": 3}), "b": "plain text"})
        jobs.end(exits_not, "SUCCESS")

        done, failed = service.wait_for("exits"), service.wait_for("exits-not")

    assert (done["status"], done["result"]) == ("done", {"a": {"rows": 3}, "b": "plain text"}), done
    assert failed["status"] == "failed"
    assert "ended SUCCESS without calling back" in failed["error"]


def test_an_exit_value_over_the_size_limit_fails_the_run_saying_so(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with on_double(databricks_double, tmp_path, monkeypatch, watch_interval=0.5, max_value_bytes=1000) as (
        service,
        jobs,
    ):
        start(service, "exits-big")
        until(lambda: len(jobs.active()) == 1, "the run to start")
        jobs.end(databricks_run(service, "exits-big")["run_id"], "SUCCESS", exit_values={"notebook": "x" * 2000})

        run = service.wait_for("exits-big")

    assert run["status"] == "failed"
    assert "2000 bytes, over DARA_MAX_VALUE_BYTES (1000)" in run["error"], run["error"]


def test_a_notebook_that_exits_with_a_value_and_never_calls_back_completes_its_run(tmp_path: Path) -> None:
    """On the embedded workspace: brickhouse runs the notebook's dbutils.notebook.exit,
    the run's output carries the value, and the DARA run ends done with it."""
    with running_service(make_settings(tmp_path)) as service:
        w = service.runtime.workspace
        paths = import_notebooks(w, "/Workspace/Shared/dara-tests", TEST_NOTEBOOKS)
        upsert_job(w, demo_job_settings("exits_with_value", paths["exits_with_value"], cluster=None))
        body = {
            "pipeline": "notebook_job",
            "id": "exits",
            "params": {"job": "exits_with_value", "params": {"name": "ada"}},
        }
        assert service.http.post("/runs", json=body).status_code == 201

        run = service.wait_for("exits", timeout=120)
        state = final_state(service, "exits")

    assert (run["status"], run["result"]) == ("done", {"greeting": "hello ada", "rows": [1, 2, 3]}), run
    assert state == "SUCCESS"


# -- the pure parts, on runs made up here ------------------------------------------------


def made_up_run(life_cycle: str | None, result: str | None = None, *, ended_ms_ago: int = 1000) -> jobs.Run:
    state = (
        None
        if life_cycle is None
        else jobs.RunState(
            life_cycle_state=jobs.RunLifeCycleState(life_cycle),
            result_state=jobs.RunResultState(result) if result else None,
        )
    )
    return jobs.Run(run_id=7, state=state, end_time=app.watchers.now_ms() - ended_ms_ago)


@pytest.mark.parametrize(
    ("life_cycle", "result", "window", "ended"),
    [
        ("TERMINATED", "SUCCESS", 0, "SUCCESS"),
        ("TERMINATED", "FAILED", 0, "FAILED"),
        ("INTERNAL_ERROR", None, 0, "INTERNAL_ERROR"),
        ("SKIPPED", None, 0, "SKIPPED"),
        ("RUNNING", None, 0, None),
        ("TERMINATING", None, 0, None),
        (None, None, 0, None),
        ("TERMINATED", "FAILED", 60, None),  # a repair may still run it again
        ("TERMINATED", "SUCCESS", 60, "SUCCESS"),  # nothing to repair
    ],
)
def test_a_run_has_ended_once_terminal_and_past_its_repair_window(
    life_cycle: str | None, result: str | None, window: int, ended: str | None, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, repair_window=timedelta(seconds=window))
    assert app.watchers.ended_state(made_up_run(life_cycle, result), settings) == ended


@pytest.mark.parametrize(("ended_ms_ago", "ended"), [(59_999, None), (60_000, "FAILED")])
def test_a_failed_run_has_ended_once_its_repair_window_closes(
    ended_ms_ago: int, ended: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = app.watchers.now_ms()
    monkeypatch.setattr(app.watchers, "now_ms", lambda: now)  # the watcher's clock, fixed: the edge is exact
    settings = make_settings(tmp_path, repair_window=timedelta(seconds=60))
    assert app.watchers.ended_state(made_up_run("TERMINATED", "FAILED", ended_ms_ago=ended_ms_ago), settings) == ended


def test_an_exit_value_is_json_if_it_parses_and_refused_if_it_could_not_be_stored() -> None:
    decoded = app.exit_values._decoded
    assert decoded('{"rows": 7}', "task main", 5) == {"rows": 7}
    assert decoded("not json", "task main", 5) == "not json"
    assert decoded('"\\ud800"', "task main", 5) == app.exit_values._Refused(surrogate_message("task main", "\\ud800"))
    assert decoded("[[[1]]]", "task main", 2) == app.exit_values._Refused(depth_message("task main", 3, 2))
    assert decoded("[[1]]", "task main", 2) == [[1]]


def test_a_run_seen_active_on_its_own_counts_as_active_until_the_next_listing() -> None:
    """Started after the listing, it is missing from it; read on its own, it is active."""
    listing = SimpleNamespace(jobs=SimpleNamespace(list_runs=lambda **_: []), config=SimpleNamespace(host="x"))
    active = app.active_runs.ActiveRuns(cast(WorkspaceClient, listing), 60.0)
    assert not asyncio.run(active.is_active(7))  # the listing, taken now, does not have it
    active.saw_ended(7, "FAILED")

    active.saw_active(7)  # read on its own: repaired, it runs again

    assert active.ended_as(7) is None
    assert asyncio.run(active.is_active(7))


class Outputs:
    """``w.jobs.get_run_output`` for made-up task runs: an output, or an error to raise."""

    def __init__(self, **outputs: object) -> None:
        self.outputs = {int(run.removeprefix("run")): out for run, out in outputs.items()}
        self.jobs = self

    def get_run_output(self, run_id: int) -> jobs.RunOutput:
        out = self.outputs[run_id]
        if isinstance(out, Exception):
            raise out
        if out is None:
            return jobs.RunOutput()
        text, truncated = out if isinstance(out, tuple) else (out, False)
        return jobs.RunOutput(notebook_output=jobs.NotebookOutput(result=cast(str, text), truncated=truncated))


def exit_values(outputs: Outputs, *keys: str, max_bytes: int = 100, max_depth: int = 3) -> Any:
    tasks = [jobs.RunTask(task_key=key, run_id=run_id) for key, run_id in zip(keys, outputs.outputs, strict=True)]
    run = jobs.Run(run_id=1, tasks=[*tasks, jobs.RunTask(task_key="not started")])  # no run id: skipped
    return app.exit_values.read_exit_values(
        cast(WorkspaceClient, outputs), run, max_bytes=max_bytes, max_depth=max_depth
    )


def test_one_tasks_exit_value_is_the_value_and_several_are_keyed_by_task() -> None:
    ExitValues = app.exit_values.ExitValues
    assert exit_values(Outputs(run1='{"rows": 7}'), "main") == ExitValues(True, {"rows": 7})
    assert exit_values(Outputs(run1="null"), "main") == ExitValues(True, None)  # a value, and it is null
    assert exit_values(Outputs(run1='"a"', run2="2"), "a", "b") == ExitValues(True, {"a": "a", "b": 2})
    # A task without output, or whose output is gone for good, has no value; the others do.
    gone = dbx_errors.ResourceDoesNotExist("no output")
    assert exit_values(Outputs(run1=gone, run2=None, run3="2"), "a", "b", "c") == ExitValues(True, {"c": 2})
    assert exit_values(Outputs(run1=None), "main") == ExitValues()


def test_a_task_whose_output_is_gone_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="app.exit_values"):
        found = exit_values(Outputs(run3=dbx_errors.ResourceDoesNotExist("expired"), run4="1"), "a", "b")
    assert found == app.exit_values.ExitValues(True, {"b": 1})
    assert caplog.messages == ["no output for task run 3: expired"]


def test_an_exit_value_that_cannot_be_used_says_why() -> None:
    problem = exit_values(Outputs(run1=("x" * 10, True)), "main").problem
    assert problem == "the exit value of task main was cut short by Databricks (it keeps 5 MB); exit with less"
    problem = exit_values(Outputs(run1="1" * 60, run2="2" * 60), "a", "b").problem
    assert problem == (
        "the exit value of task b makes the run's exit values 120 bytes, over DARA_MAX_VALUE_BYTES (100); "
        "exit with less or raise the setting"
    )
    assert exit_values(Outputs(run1="1" * 100), "a").problem is None  # at the limit: fine
    problem = exit_values(Outputs(run1="1", run2="[[[[1]]]]"), "a", "b").problem
    assert problem == depth_message("the exit value of task b", 4, 3)


def test_a_transient_failure_to_read_an_exit_value_is_raised_to_read_again() -> None:
    with pytest.raises(dbx_errors.TemporarilyUnavailable):
        exit_values(Outputs(run1="1", run2=dbx_errors.TemporarilyUnavailable("busy")), "a", "b")


def test_a_run_report_names_each_task_its_result_and_message() -> None:
    run = jobs.Run(
        run_id=3,
        state=jobs.RunState(life_cycle_state=jobs.RunLifeCycleState.TERMINATED, result_state=RunResultState.FAILED),
        tasks=[
            jobs.RunTask(
                task_key="load",
                run_id=31,
                state=jobs.RunState(result_state=RunResultState.FAILED, state_message="boom"),
            ),
            jobs.RunTask(task_key="later", run_id=32),  # never ran: no state
        ],
    )

    assert app.watchers.run_report(run) == {
        "run_id": 3,
        "result": "FAILED",
        "tasks": [
            {"task": "load", "result": "FAILED", "message": "boom", "run_id": 31},
            {"task": "later", "result": "UNKNOWN", "message": "", "run_id": 32},
        ],
    }


@pytest.mark.parametrize(
    ("result", "window", "ended", "held_for"),
    [
        ("FAILED", 60, True, 60_000),
        ("FAILED", 0.001, True, 1),  # a millisecond is a window
        ("SUCCESS", 60, True, 0),  # nothing to repair
        ("FAILED", 0, True, 0),  # repairs not waited for
        ("FAILED", 60, False, 0),  # no end time yet
        (None, 60, True, 0),  # no state
    ],
)
def test_a_failed_run_is_held_open_for_its_repair_window_from_its_end(
    result: str | None, window: float, ended: bool, held_for: int, tmp_path: Path
) -> None:
    state = jobs.RunState(result_state=jobs.RunResultState(result)) if result else None
    run = jobs.Run(run_id=7, state=state, end_time=1_000_000 if ended else 0)
    settings = make_settings(tmp_path, repair_window=timedelta(seconds=window))

    assert app.watchers.repairable_until(run, settings) == (1_000_000 + held_for if held_for else 0)


def test_a_run_read_as_ended_is_not_active_whatever_the_listing_says() -> None:
    listed = [jobs.BaseRun(run_id=7, state=jobs.RunState(life_cycle_state=jobs.RunLifeCycleState.RUNNING))]
    listing = SimpleNamespace(jobs=SimpleNamespace(list_runs=lambda **_: listed), config=SimpleNamespace(host="x"))
    active = app.active_runs.ActiveRuns(cast(WorkspaceClient, listing), 60.0)
    assert asyncio.run(active.is_active(7))

    active.saw_ended(7, "FAILED")

    assert not asyncio.run(active.is_active(7))
    assert active.ended_as(7) == "FAILED"
    assert not asyncio.run(active.is_active(7))  # told once, and the listing is still stale
    # It keeps the most recent MAX_ENDED of them, forgetting the oldest first.
    active.saw_ended(7, "FAILED")
    for run_id in range(100, 100 + app.active_runs.MAX_ENDED):
        active.saw_ended(run_id, "SUCCESS")
    assert active.ended_as(7) is None and active.ended_as(100) == "SUCCESS"
    assert active.ended_as(99 + app.active_runs.MAX_ENDED) == "SUCCESS"


def test_a_failed_listing_is_not_tried_again_for_an_interval_and_says_why() -> None:
    """One outage is one listing call an interval, however many watchers look meanwhile."""
    clock = [1000.0]
    calls: list[str] = []
    runs: list[jobs.BaseRun] = []

    def list_runs(**_: object) -> list[jobs.BaseRun]:
        calls.append("list")
        if not runs:
            raise RuntimeError("the workspace is down")
        return runs

    listing = SimpleNamespace(
        jobs=SimpleNamespace(list_runs=list_runs), config=SimpleNamespace(host="https://dbc.example")
    )
    active = app.active_runs.ActiveRuns(cast(WorkspaceClient, listing), 60.0, clock=lambda: clock[0])
    why = "listing the active runs of https://dbc.example failed: RuntimeError: the workspace is down"

    for seconds_later in (0.0, 59.9):  # the second look finds the failure remembered
        clock[0] = 1000.0 + seconds_later
        with pytest.raises(app.active_runs.ListingUnavailable) as failed:
            asyncio.run(active.is_active(7))
        assert str(failed.value) == why
    assert (calls, active.listings) == (["list"], 0)

    runs.append(jobs.BaseRun(run_id=7, state=jobs.RunState(life_cycle_state=jobs.RunLifeCycleState.QUEUED)))
    clock[0] = 1060.0  # an interval after the failure: listed again
    assert asyncio.run(active.is_active(7))
    assert (calls, active.listings) == (["list", "list"], 1)
    assert active.listed_state(7) == app.active_runs.ListedState("QUEUED", "")
