"""What one look of a run watcher decides (app.watchers), on a made-up Databricks run.

The end-to-end tests (tests/test_run_watch.py) show a watcher failing, resolving or
cancelling what a real run did; these show each decision of a look on its own, with the
real SDK's promises and a fake ``w.jobs`` that counts its calls: whether Databricks is
asked at all, what settles the wait and with what, when the run is cancelled, and when
a look is too near the run's deadline to wait for another. The watcher's clock
(``app.watchers.now_ms``) is fixed, so deadlines are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as dbx_errors
from databricks.sdk.service import jobs
from databricks.sdk.service.jobs import RunLifeCycleState, RunResultState
from resonate.resonate import Resonate
from resonate.timing import now_ms
from resonate.types import Value

import app.watchers
from app import repair_windows
from app.active_runs import ActiveRuns
from app.durable.resonate_format import error_message, rejection
from app.durable.step import StepInfo
from app.runtime import build_resonate
from app.settings import Settings
from app.watched_runs import WatchedRuns
from app.watchers import Look, check_run, look_at_run
from steps.jobs import JobRun
from tests.harness import make_settings

#: The watcher's "now": ten days from the real one, so that the promises these tests
#: date from it are pending in the real SDK however long a test takes.
NOW = now_ms() + 10 * 86_400_000
INTERVAL = 60.0
RUN = JobRun(job_id=1, run_id=5, url="https://dbc.example/#job/1/run/5")
WAIT = "r:1"


class Jobs:
    """``w.jobs`` of run 5: listed as active or not, read as ``run``, and its tasks' outputs."""

    def __init__(
        self,
        run: jobs.Run | Exception,
        *,
        listed: bool = False,
        meanwhile: Callable[[], None] = lambda: None,
        **outputs: jobs.RunOutput,
    ) -> None:
        self.run, self.listed, self.meanwhile = run, listed, meanwhile
        self.outputs = {int(task.removeprefix("task")): out for task, out in outputs.items()}
        self.calls: list[str] = []
        self.jobs = self
        self.config = SimpleNamespace(host="https://dbc.example")

    def list_runs(self, **_: object) -> list[jobs.BaseRun]:
        self.calls.append("list")
        running = jobs.RunState(life_cycle_state=RunLifeCycleState.RUNNING)
        return [jobs.BaseRun(run_id=RUN.run_id, state=running)] if self.listed else []

    def get_run(self, run_id: int) -> jobs.Run:
        self.calls.append(f"get {run_id}")
        self.meanwhile()  # what happens while the watcher reads the run
        if isinstance(self.run, Exception):
            raise self.run
        return self.run

    def get_run_output(self, run_id: int) -> jobs.RunOutput:
        self.calls.append(f"output {run_id}")
        return self.outputs.get(run_id, jobs.RunOutput())


def running() -> jobs.Run:
    return jobs.Run(run_id=RUN.run_id, state=jobs.RunState(life_cycle_state=RunLifeCycleState.RUNNING))


def ended(result: str, *tasks: jobs.RunTask, end_time: int = NOW - 1000, message: str = "") -> jobs.Run:
    state = jobs.RunState(
        life_cycle_state=RunLifeCycleState.TERMINATED, result_state=RunResultState(result), state_message=message
    )
    return jobs.Run(run_id=RUN.run_id, state=state, tasks=list(tasks), end_time=end_time)


def task(key: str, run_id: int, result: str, message: str = "") -> jobs.RunTask:
    state = jobs.RunState(life_cycle_state=RunLifeCycleState.TERMINATED, result_state=RunResultState(result))
    state.state_message = message
    return jobs.RunTask(task_key=key, run_id=run_id, state=state)


@dataclass
class Watch:
    """A run ``r`` with its wait ``r:1``, and what a watcher of run 5 for it holds."""

    resonate: Resonate
    settings: Settings
    workspace: Jobs
    active: ActiveRuns
    watched: WatchedRuns
    #: The run whose deadline a look reads (``info.run_id``).
    root: str = "r"

    def on(self, workspace: Jobs) -> Watch:
        self.workspace = workspace
        self.active = ActiveRuns(cast(WorkspaceClient, workspace), INTERVAL, clock=lambda: 0.0)
        return self

    async def check(self, *, final: bool = False, settle: bool = False, details: jobs.Run | None = None) -> str:
        return await check_run(
            self.resonate,
            cast(WorkspaceClient, self.workspace),
            RUN,
            WAIT,
            final,
            settle,
            active=self.active,
            settings=self.settings,
            details=details,
        )

    async def look(self, check: int = 2, *, deadline_in: int = 3_600_000, **flags: bool) -> Look:
        info = StepInfo(id=f"{self.root}:2", run_id=self.root, deadline_ms=NOW + deadline_in)
        return await look_at_run(
            self.resonate,
            cast(WorkspaceClient, self.workspace),
            self.active,
            self.settings,
            self.watched,
            info,
            RUN,
            WAIT,
            check,
            **flags,
        )

    async def wait(self) -> tuple[str, Any]:
        """The wait's state, and its value or its error's message."""
        record = await self.resonate.promises.get(WAIT)
        data = record.value.data
        return record.state, error_message(data) if record.state.startswith("rejected") else data


@pytest.fixture
async def watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Watch]:
    monkeypatch.setattr(app.watchers, "now_ms", lambda: NOW)
    settings = make_settings(tmp_path, databricks_host="https://dbc.example", repair_window=timedelta(0))
    resonate = build_resonate(settings)
    await resonate.promises.create("r", NOW + 86_400_000, Value(data=None), {})
    await resonate.promises.create(WAIT, NOW + 3_600_000, Value(data=None), {})
    try:
        yield Watch(
            resonate, settings, Jobs(running()), ActiveRuns(cast(WorkspaceClient, None), INTERVAL), WatchedRuns()
        )
    finally:
        await resonate.stop()


LINK = f"see {RUN.url}"

# -- check_run: what a run that ended does to its wait --------------------------------


@pytest.mark.anyio
async def test_a_settled_wait_is_not_looked_up_on_databricks(watch: Watch) -> None:
    await watch.resonate.promises.resolve(WAIT, Value(data=1))

    assert await watch.on(Jobs(ended("FAILED"))).check(final=True) == "settled"

    assert watch.workspace.calls == []
    assert await watch.wait() == ("resolved", 1)


@pytest.mark.anyio
async def test_a_listed_run_is_waiting_and_not_read_on_its_own(watch: Watch) -> None:
    assert await watch.on(Jobs(ended("FAILED"), listed=True)).check(final=True) == "waiting"

    assert watch.workspace.calls == ["list"]
    assert (await watch.wait())[0] == "pending"


@pytest.mark.anyio
async def test_a_run_read_as_running_is_active_until_the_next_listing(watch: Watch) -> None:
    assert await watch.on(Jobs(running())).check(final=True) == "waiting"
    assert await watch.active.is_active(RUN.run_id)

    assert watch.workspace.calls == ["list", f"get {RUN.run_id}"]  # the second lookup asked nobody


@pytest.mark.anyio
async def test_a_run_that_ended_failed_rejects_its_wait_on_the_final_look_only(watch: Watch) -> None:
    run = ended(
        "FAILED", task("load", 51, "FAILED", "boom"), task("tidy", 52, "SUCCESS"), task("later", 53, "UPSTREAM_FAILED")
    )
    watch.on(Jobs(run, task51=jobs.RunOutput(error="ValueError: bad row 7")))

    assert await watch.check() == "ended"
    assert (await watch.wait())[0] == "pending"
    assert watch.active.ended_as(RUN.run_id) is None
    assert await watch.check(final=True) == "rejected"

    blamed = "task load FAILED (boom): ValueError: bad row 7; task later UPSTREAM_FAILED ()"
    assert await watch.wait() == ("rejected", f"Databricks run 5 ended FAILED without calling back ({blamed}); {LINK}")
    assert watch.active.ended_as(RUN.run_id) == "FAILED"  # read once: the listing is not trusted for it


@pytest.mark.anyio
async def test_a_run_that_ended_without_a_task_to_blame_says_what_databricks_said(watch: Watch) -> None:
    watch.on(Jobs(ended("CANCELED", message="Run cancelled by a user")))
    assert await watch.check(final=True) == "rejected"
    assert await watch.wait() == (
        "rejected",
        f"Databricks run 5 ended CANCELED without calling back (Run cancelled by a user); {LINK}",
    )


@pytest.mark.anyio
async def test_a_run_that_succeeded_without_calling_back_or_an_exit_value_rejects_its_wait(watch: Watch) -> None:
    watch.on(Jobs(ended("SUCCESS", task("main", 51, "SUCCESS"))))
    assert await watch.check(final=True) == "rejected"
    assert await watch.wait() == (
        "rejected",
        f"Databricks run 5 ended SUCCESS without calling back (no state message); {LINK}",
    )
    assert watch.workspace.calls == ["list", "get 5", "output 51"]  # its exit value, and no error read


@pytest.mark.anyio
async def test_an_exit_value_resolves_the_wait_of_a_run_that_succeeded(watch: Watch) -> None:
    output = jobs.RunOutput(notebook_output=jobs.NotebookOutput(result='{"rows": 7}'))
    watch.on(Jobs(ended("SUCCESS", task("main", 51, "SUCCESS")), task51=output))

    assert await watch.check(final=True) == "settled"

    assert await watch.wait() == ("resolved", {"rows": 7})
    assert watch.active.ended_as(RUN.run_id) == "SUCCESS"


@pytest.mark.anyio
async def test_an_exit_value_that_cannot_be_used_rejects_the_wait_saying_why(watch: Watch) -> None:
    output = jobs.RunOutput(notebook_output=jobs.NotebookOutput(result="1", truncated=True))
    watch.on(Jobs(ended("SUCCESS", task("main", 51, "SUCCESS")), task51=output))

    assert await watch.check(final=True) == "rejected"

    why = "the exit value of task main was cut short by Databricks (it keeps 5 MB); exit with less"
    assert await watch.wait() == ("rejected", f"Databricks run 5 ended SUCCESS, but {why}; {LINK}")


@pytest.mark.parametrize("ended_as", ["FAILED", "SUCCESS with an exit value it cannot use"])
@pytest.mark.anyio
async def test_a_callback_that_arrives_while_the_run_is_read_wins_and_the_look_says_so(
    watch: Watch, ended_as: str
) -> None:
    loop = asyncio.get_running_loop()

    def callback_arrives() -> None:  # on the thread that reads the run
        asyncio.run_coroutine_threadsafe(watch.resonate.promises.resolve(WAIT, Value(data=2)), loop).result()

    cut_short = jobs.RunOutput(notebook_output=jobs.NotebookOutput(result="1", truncated=True))
    run = ended("FAILED") if ended_as == "FAILED" else ended("SUCCESS", task("main", 51, "SUCCESS"))
    watch.on(Jobs(run, meanwhile=callback_arrives, task51=cut_short))

    assert await watch.check(final=True) == "settled"

    assert await watch.wait() == ("resolved", 2)


@pytest.mark.anyio
async def test_a_job_nobody_calls_back_from_resolves_its_wait_with_its_report(watch: Watch) -> None:
    watch.on(Jobs(ended("SUCCESS", task("main", 51, "SUCCESS"))))

    assert await watch.check(final=True, settle=True) == "settled"

    report = {
        "run_id": 5,
        "result": "SUCCESS",
        "tasks": [{"task": "main", "result": "SUCCESS", "message": "", "run_id": 51}],
    }
    assert await watch.wait() == ("resolved", report)
    assert watch.workspace.calls == ["list", "get 5"]  # no exit values: the report is the value


@pytest.mark.anyio
async def test_a_job_nobody_calls_back_from_that_failed_rejects_its_wait_without_blaming_callbacks(
    watch: Watch,
) -> None:
    watch.on(Jobs(ended("FAILED", task("main", 51, "FAILED", "boom"))))
    assert await watch.check(final=True, settle=True) == "rejected"
    assert await watch.wait() == ("rejected", f"Databricks run 5 ended FAILED (task main FAILED (boom)); {LINK}")


@pytest.mark.anyio
async def test_a_run_event_s_read_of_the_run_is_used_whatever_the_listing_says(watch: Watch) -> None:
    watch.on(Jobs(running(), listed=True))
    assert await watch.check(final=True, details=ended("FAILED")) == "rejected"
    assert watch.workspace.calls == []


# -- check_run: a failed run held open for a repair -----------------------------------


@pytest.mark.anyio
async def test_a_failed_run_is_held_open_for_repair_and_the_window_is_noted(watch: Watch) -> None:
    watch.settings = watch.settings.model_copy(update={"repair_window": timedelta(seconds=60)})
    watch.on(Jobs(ended("FAILED", end_time=NOW - 1000)))

    assert await watch.check(final=True) == "waiting"

    assert (await watch.wait())[0] == "pending"
    assert await repair_windows.repairable_until(watch.resonate, "r", RUN.run_id) == NOW + 59_000


@pytest.mark.anyio
async def test_the_embedded_workspace_holds_a_failed_run_open_but_notes_no_window(watch: Watch, tmp_path: Path) -> None:
    watch.settings = make_settings(tmp_path, repair_window=timedelta(seconds=60))  # it cannot repair
    watch.on(Jobs(ended("FAILED", end_time=NOW - 1000)))

    assert await watch.check(final=True) == "waiting"

    assert await repair_windows.repairable_until(watch.resonate, "r", RUN.run_id) is None


@pytest.mark.anyio
async def test_a_repair_window_that_closes_now_is_closed(watch: Watch) -> None:
    watch.settings = watch.settings.model_copy(update={"repair_window": timedelta(seconds=60)})
    watch.on(Jobs(ended("FAILED", end_time=NOW - 60_000)))

    assert await watch.check(final=True) == "rejected"


# -- look_at_run: when to read the run, and when to cancel it -------------------------


@pytest.mark.anyio
async def test_the_first_look_waits_an_interval_without_asking_databricks(watch: Watch) -> None:
    assert await watch.look(check=1) == Look("waiting", seconds=INTERVAL)
    assert watch.workspace.calls == []
    assert watch.watched.get(RUN.run_id) is not None  # a run event for it can be checked


@pytest.mark.anyio
async def test_a_look_paces_itself_to_fall_inside_the_deadline_margin(watch: Watch) -> None:
    watch.on(Jobs(running(), listed=True))
    assert await watch.look(deadline_in=50_000) == Look("waiting", seconds=20.0)


@pytest.mark.anyio
async def test_a_run_still_going_at_its_deadline_margin_is_cancelled_even_on_the_first_look(watch: Watch) -> None:
    await _deadline(watch, in_ms=20_000)
    watch.on(Jobs(running(), listed=True))

    assert await watch.look(check=1, deadline_in=20_000) == Look("deadline", seconds=10.0, cancel=True)
    assert (await watch.wait())[0] == "pending"  # it times out with the run


@pytest.mark.anyio
async def test_a_watcher_cut_short_by_the_sdk_does_not_cancel_what_its_run_still_waits_for(watch: Watch) -> None:
    """The SDK gives a step a day at most: the watcher's deadline is near, the run's is not."""
    watch.on(Jobs(running(), listed=True))
    assert await watch.look(check=1, deadline_in=20_000) == Look("waiting", seconds=10.0)
    assert await watch.look(check=2, deadline_in=20_000) == Look("waiting", seconds=10.0)


@pytest.mark.anyio
async def test_a_first_look_with_the_margin_left_exactly_is_near_the_deadline(watch: Watch) -> None:
    await _deadline(watch, in_ms=30_000)
    watch.on(Jobs(running(), listed=True))
    look = await watch.look(check=1, deadline_in=30_000)
    assert (look.verdict, look.cancel) == ("deadline", True)


@pytest.mark.anyio
async def test_the_final_look_at_a_job_nobody_calls_back_from_resolves_its_wait(watch: Watch) -> None:
    watch.on(Jobs(ended("SUCCESS")))
    assert await watch.look(final=True, settle=True) == Look("settled", state="SUCCESS", wait="resolved")
    assert await watch.wait() == ("resolved", {"run_id": 5, "result": "SUCCESS", "tasks": []})


@pytest.mark.parametrize(("left_ms", "near"), [(30_000, True), (30_001, False)])
@pytest.mark.anyio
async def test_the_deadline_margin_is_exact(watch: Watch, left_ms: int, near: bool) -> None:
    await _deadline(watch, in_ms=left_ms)
    watch.on(Jobs(running(), listed=True))
    look = await watch.look(check=2, deadline_in=20_000)
    assert (look.verdict, look.cancel) == (("deadline", True) if near else ("waiting", False))


@pytest.mark.parametrize("run_is", ["running", "done"])
@pytest.mark.anyio
async def test_a_run_whose_wait_was_resolved_is_watched_to_its_end_and_left_running(watch: Watch, run_is: str) -> None:
    await watch.resonate.promises.resolve(WAIT, Value(data=1))
    if run_is == "done":
        await watch.resonate.promises.resolve("r", Value(data=1))
    watch.on(Jobs(running(), listed=True))
    assert await watch.look() == Look("settled", seconds=INTERVAL)
    assert watch.workspace.calls == ["list"]  # the listing shows it running: not read on its own

    watch.on(Jobs(ended("SUCCESS")))
    assert await watch.look() == Look("settled", state="SUCCESS", wait="resolved")
    assert watch.watched.get(RUN.run_id) is None  # the watch is over


@pytest.mark.parametrize("ends", ["the wait timed out", "the pipeline failed"])
@pytest.mark.anyio
async def test_a_run_nobody_waits_for_any_more_is_cancelled(watch: Watch, ends: str) -> None:
    if ends == "the wait timed out":
        await watch.resonate.promises.reject(WAIT, rejection("timed out"))
    else:
        await watch.resonate.promises.resolve(WAIT, Value(data=1))
        await watch.resonate.promises.reject("r", rejection("a later step failed"))
    watch.on(Jobs(running(), listed=True))

    assert await watch.look() == Look("settled", seconds=INTERVAL, cancel=True)


@pytest.mark.anyio
async def test_a_cancelled_run_is_read_on_its_own_until_it_ended(watch: Watch) -> None:
    """After a cancel the listing may show the run for an interval yet: it is not asked."""
    watch.on(Jobs(running()))
    assert not await watch.active.is_active(RUN.run_id)  # listed before it started
    assert await watch.look(cancelled=True) == Look("deadline", seconds=INTERVAL)
    assert await watch.active.is_active(RUN.run_id)  # read as running, so noted until the next listing
    assert watch.workspace.calls == ["list", "get 5"]

    watch.on(Jobs(ended("CANCELED"), listed=True))
    assert await watch.look(cancelled=True) == Look("deadline", state="CANCELED", wait="pending")


@pytest.mark.anyio
async def test_a_run_without_a_state_yet_is_still_running(watch: Watch) -> None:
    watch.on(Jobs(jobs.Run(run_id=RUN.run_id)))
    assert await watch.look(cancelled=True) == Look("deadline", seconds=INTERVAL)


@pytest.mark.anyio
async def test_a_run_read_as_ended_is_not_read_again(watch: Watch) -> None:
    await watch.resonate.promises.resolve(WAIT, Value(data=1))
    watch.on(Jobs(running(), listed=True))
    watch.active.saw_ended(RUN.run_id, "FAILED")

    assert await watch.look() == Look("settled", state="FAILED", wait="resolved")
    assert watch.workspace.calls == []


@pytest.mark.anyio
async def test_an_ended_run_is_looked_at_once_more_for_a_callback_in_flight(watch: Watch) -> None:
    watch.on(Jobs(ended("FAILED")))
    assert await watch.look() == Look("ended", seconds=INTERVAL)
    assert (await watch.wait())[0] == "pending"

    assert await watch.look(final=True) == Look("rejected", state="FAILED", wait="rejected")


@pytest.mark.anyio
async def test_a_look_that_cannot_reach_databricks_is_made_again_an_interval_later(watch: Watch) -> None:
    watch.on(Jobs(dbx_errors.TemporarilyUnavailable("busy")))
    assert await watch.look() == Look("unreachable", seconds=INTERVAL)
    assert watch.watched.get(RUN.run_id) is not None


async def _deadline(watch: Watch, *, in_ms: int) -> None:
    """Make the run's own deadline ``in_ms`` from now: a run of its own, as a root keeps its timeout."""
    watch.root = "near"
    await watch.resonate.promises.create(watch.root, NOW + in_ms, Value(data=None), {})
