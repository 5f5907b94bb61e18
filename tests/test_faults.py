"""Faults: a worker killed at each point of the notebook loop, a restart of the
in-process default, and Databricks API faults at the HTTP boundary.

Kill points. Two workers share one in-process Resonate server (:mod:`tests.shared_server`)
-- or, as a second variant, one Postgres database (resonate-pg) --
and one embedded workspace, behind one "front door" -- the real app at the address
notebooks call back -- like two replicas behind a load balancer. A worker is killed at a
point of the loop: it goes deaf *and* mute at once, so the server hears nothing more from
it, not even a lease heartbeat, and its in-flight work is abandoned. The other worker
must finish the run: it completes, Databricks starts one run, the callback is not lost.
Each point is reached deterministically by holding the first call that gets there (a
wrapped ``jobs.run_now`` or ``notify``) until its worker is dead.

Task leases are shortened to :data:`LEASE` (``DARA_LEASE``) so a takeover takes seconds
rather than the default minute. The kill is simulated in the test's process, the same
way on both backends: the worker's connection goes deaf and mute at once (and, on
Postgres, closes its database connections), so its lease lapses -- which is all a
backend can see of a SIGKILL. On Postgres real worker processes are SIGKILLed at each of
these points too (``tests/test_postgres_sigkill.py``), and mid-step below.

Restart of the in-process default: what is lost is reported as lost.

Databricks faults. The service is pointed at the recorded-shape HTTP double, which
answers run-now and runs/get with 429s, 5xx, read timeouts and dropped connections;
steps retry within their policy, Databricks sees one run per run, and nothing hangs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from databricks.sdk import WorkspaceClient
from databricks.sdk.clock import RealClock
from databricks.sdk.config import Config
from fastapi import FastAPI
from resonate.timing import now_ms

import app.runtime
import app.watchers
import app.workspace.client
import pipelines.notebook_job
from app.durable import Context, pipeline
from app.durable.in_process import InProcessServer
from app.main import create_app
from app.runtime import Runtime
from app.services.run_status import RunView, read_run
from app.settings import PROJECT_ROOT, Settings
from app.wiring import notify_config
from app.workspace.deploy import deploy_demo
from app.workspace.embedded import LOCAL_TOKEN, EmbeddedWorkspace
from scripts.databricks_double import (
    DatabricksDouble,
    Delay,
    Drop,
    RecordedRequest,
    Response,
    api_error,
    recorded_run,
    throttled,
    unavailable,
)
from steps.notify import notify as real_notify
from tests.harness import Service, make_settings, running_service, sign
from tests.pipelines_for_tests import WITH_TEST_PIPELINES
from tests.postgres import BACKENDS, KillableNetwork, backend_settings
from tests.shared_server import SharedServer, WorkerConnection
from tests.sigkill_worker import BLOCK, WORKER_PIPELINES

#: Task lease of the test workers: how long a dead worker's task stays out of reach.
LEASE = timedelta(seconds=2)
DEMO_JOB = "dara-demo"
NOTEBOOK_DIR = "/Workspace/Shared/dara"


# -- killing a worker -------------------------------------------------------------------


class KillableConnection(WorkerConnection):
    """A worker's connection that can die the way a killed process does.

    ``abandon()`` alone leaves the worker able to *send*: its lease heartbeat would
    keep its tasks out of every other worker's reach. A killed process sends nothing.
    """

    def __init__(self, server: Any, pid: str) -> None:
        super().__init__(server, pid)
        self.dead = False

    def kill(self) -> None:
        self.abandon()
        self.dead = True

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        if self.dead:
            raise ConnectionRefusedError(f"worker {self._pid} was killed")
        return await super().send(req, headers)


class WorkerKilled(Exception):
    """What a held call sees when it is let go: its process is gone."""


class KillPoint:
    """Holds the first call that reaches a point until the test has killed its worker.

    Later calls (the survivor's re-execution) go through. Calls run on step threads,
    hence threading events.
    """

    def __init__(self) -> None:
        self.victim: str | None = None
        self.reached = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()

    def stop_here(self, worker: str) -> None:
        with self._lock:
            if self.victim is not None:
                return
            self.victim = worker
        self.reached.set()
        self.released.wait(timeout=120)
        raise WorkerKilled(f"{worker} was killed here")

    async def wait_reached(self, timeout: float = 30) -> str:
        reached = await asyncio.to_thread(self.reached.wait, timeout)
        assert reached and self.victim is not None, "no worker reached the kill point"
        return self.victim


@dataclass
class Worker:
    name: str
    conn: KillableConnection | KillableNetwork
    runtime: Runtime
    #: Run ids Databricks answered this worker's run-now calls with.
    started: list[int] = field(default_factory=list)


@dataclass
class FrontDoor:
    """The address notebooks call back: the real app, routed to a live worker."""

    app: FastAPI
    url: str
    listener: socket.socket
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.server = uvicorn.Server(uvicorn.Config(self.app, lifespan="off", log_level="warning"))
        self.task = asyncio.create_task(self.server.serve(sockets=[self.listener]))
        with anyio.fail_after(10):
            while not self.server.started:
                await anyio.sleep(0.01)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task


@dataclass
class Cluster:
    workspace: EmbeddedWorkspace
    job_id: int
    shared: SharedServer | None  # None on Postgres
    workers: dict[str, Worker]
    front: FrontDoor

    def survivor(self, victim: str) -> Worker:
        [other] = [w for name, w in self.workers.items() if name != victim]
        return other

    async def kill(self, victim: str, point: KillPoint | None = None) -> Worker:
        """Kill ``victim`` abruptly; the front door routes to the survivor from now on."""
        worker = self.workers[victim]
        worker.conn.kill()
        survivor = self.survivor(victim)
        self.front.app.state.runtime = survivor.runtime
        if point is not None:
            point.released.set()  # the held call finds its process gone and raises
        # Collect the corpse: every send fails, so nothing of this reaches the server.
        await worker.runtime.stop()
        return survivor

    def databricks_runs(self) -> list[int]:
        w = WorkspaceClient(host=self.workspace.host, token=LOCAL_TOKEN, auth_type="pat")
        return sorted(run.run_id for run in w.jobs.list_runs(job_id=self.job_id))  # type: ignore[misc]


def _free_listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return listener


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``make_settings`` overrides for the backend: none (in-process) or a fresh database."""
    return backend_settings(request, request.param)


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: dict[str, Any] | None = None,
    pipelines: tuple[Any, ...] = WITH_TEST_PIPELINES,
) -> AsyncIterator[Cluster]:
    """Two workers on one in-process server (or, with ``backend``'s ``postgres_dsn``, one
    database) and one embedded workspace, a front door; the workers run ``pipelines``."""
    monkeypatch.setenv("DATABRICKS_TOKEN", LOCAL_TOKEN)  # the workers find the workspace by unified auth
    backend = backend or {}
    workspace = await asyncio.to_thread(EmbeddedWorkspace(tmp_path / "workspace").start)
    shared = None if backend else SharedServer()
    workers: dict[str, Worker] = {}
    front: FrontDoor | None = None
    try:
        w = WorkspaceClient(host=workspace.host, token=LOCAL_TOKEN, auth_type="pat")
        job_id = await asyncio.to_thread(deploy_demo, w, NOTEBOOK_DIR, DEMO_JOB)
        if shared is not None:
            await shared.start()
        listener = _free_listener()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for name in ("first", "second"):
            settings = make_settings(
                tmp_path / name,
                databricks_host=workspace.host,
                deploy_on_start=False,
                public_url=url,
                lease=LEASE,
                **backend,
            )
            conn: KillableConnection | KillableNetwork
            if shared is not None:
                conn = KillableConnection(shared.server, name)
            else:
                conn = KillableNetwork(app.runtime.resonate_network(settings, name))
            workers[name] = Worker(name, conn, await Runtime.start(settings, network=conn, pipelines=pipelines))
        front = FrontDoor(create_app(workers["first"].runtime.settings), url, listener)
        front.app.state.runtime = workers["first"].runtime
        yield Cluster(workspace, job_id, shared, workers, front)
    finally:
        for worker in workers.values():
            if not worker.conn.dead:
                await worker.runtime.stop()
        if front is not None:
            await front.stop()
            front.listener.close()
        if shared is not None:
            await shared.stop()
        await asyncio.to_thread(workspace.stop)


def watch_run_now(worker: Worker, point: KillPoint | None = None, *, accepted: bool = False) -> None:
    """Record the runs Databricks answers this worker's run-now with; with ``point``, hold
    the first run-now before Databricks hears of it, or (``accepted``) after it answered."""
    w = worker.runtime.workspace
    original = w.jobs.run_now

    def run_now(*args: Any, **kwargs: Any) -> Any:
        if point is not None and not accepted:
            point.stop_here(worker.name)
        started = original(*args, **kwargs)
        worker.started.append(started.run_id)
        if point is not None and accepted:
            point.stop_here(worker.name)
        return started

    w.jobs.run_now = run_now  # type: ignore[method-assign]


def hold_notify(cluster: Cluster, point: KillPoint) -> Callable[..., bool]:
    """Hold the first ``notify`` -- the step after the callback -- before it runs.

    Which worker resumes the run after the callback is up to the server, so the
    worker is told by the ``Settings`` instance injected into the step.
    """
    owner = {id(w.runtime.settings): name for name, w in cluster.workers.items()}

    def notify(settings: Settings, message: str, details: dict[str, Any] | None = None) -> bool:
        point.stop_here(owner[id(settings)])
        return real_notify(notify_config(settings), message, details)

    return notify


async def wait_for_status(worker: Worker, run_id: str, status: str, *, job_recorded: bool = False) -> RunView:
    """The run once it has ``status`` (and, with ``job_recorded``, once its ``run_job``
    step has its result: notebook_job opens its wait before it starts the job, so the run
    is briefly "waiting" with the job not yet started)."""

    def reached(run: RunView | None) -> bool:
        if run is None or run.status != status:
            return False
        return not job_recorded or any(s.name == "run_job" and s.state == "resolved" for s in run.steps)

    with anyio.fail_after(30):
        while not reached(run := await read_run(worker.runtime.resonate, run_id)):
            await anyio.sleep(0.02)
    assert run is not None
    return run


POINTS = ["before_run_now", "accepted_not_recorded", "suspended", "callback_arrived"]


@pytest.mark.anyio
@pytest.mark.parametrize("point_name", POINTS)
async def test_a_worker_killed_at_each_point_of_the_loop_is_taken_over(
    point_name: str, backend: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever point the worker dies at, the survivor finishes the run: one Databricks
    run, the notebook's own value as the result.

    * ``before_run_now``: the step ``run_job`` has begun but Databricks has not heard
      of it. The survivor executes ``run_job``: one run.
    * ``accepted_not_recorded``: Databricks accepted the run, the worker died before
      recording the step. The survivor executes ``run_job`` again with the same
      idempotency token and gets the *same* run back.
    * ``suspended``: nothing holds the run. The front door is down until the kill, so
      the notebook's callback cannot arrive before it; the callback cell retries
      until the front door answers.
    * ``callback_arrived``: the callback settled the wait, the run resumed, and its
      worker died before the next step (``notify``) ran. The survivor replays: the
      callback's value is kept and ``run_job`` is not executed again.
    """
    point = KillPoint()
    run_id = f"kill-{point_name.replace('_', '-')}"
    async with cluster(tmp_path, monkeypatch, backend) as c:
        for worker in c.workers.values():
            if point_name in ("before_run_now", "accepted_not_recorded"):
                watch_run_now(worker, point, accepted=point_name == "accepted_not_recorded")
            else:
                watch_run_now(worker)
        if point_name == "callback_arrived":
            monkeypatch.setattr(pipelines.notebook_job, "notify", hold_notify(c, point))
        if point_name != "suspended":
            await c.front.start()

        first = c.workers["first"]
        pipeline = first.runtime.pipelines["notebook_job"]
        params = {"job": DEMO_JOB, "params": {"name": "faults", "count": "4"}}
        await first.runtime.start_run(run_id, pipeline, params, started_by="test")

        if point_name == "suspended":
            await wait_for_status(first, run_id, "waiting", job_recorded=True)
            survivor = await c.kill("first")
            # Read before the front door opens: the notebook's callback may settle the
            # wait as soon as it does. The survivor may be replaying up to the wait.
            at_kill = await wait_for_status(survivor, run_id, "waiting", job_recorded=True)
            await c.front.start()
        else:
            victim = await point.wait_reached()
            survivor = await c.kill(victim, point)
            at_kill = await read_run(survivor.runtime.resonate, run_id)

        runs_at_kill = await asyncio.to_thread(c.databricks_runs)
        handle = await survivor.runtime.resonate.get(run_id)
        with anyio.fail_after(30):  # the dead worker's LEASE lapses long before (not DARA_LEASE's default minute)
            result = await handle.result()
        run = await read_run(survivor.runtime.resonate, run_id)
        databricks_runs = await asyncio.to_thread(c.databricks_runs)

    # The kill landed where it was meant to.
    assert at_kill is not None
    job_step = next((s for s in at_kill.steps if s.name == "run_job"), None)
    match point_name:
        case "before_run_now":
            assert job_step is None or job_step.state == "pending"
            assert runs_at_kill == []
        case "accepted_not_recorded":
            assert job_step is None or job_step.state == "pending"
            assert len(runs_at_kill) == 1
        case "suspended":
            assert at_kill.status == "waiting" and at_kill.steps[0].state == "pending"
        case "callback_arrived":
            assert at_kill.steps[0].state == "resolved" and at_kill.status == "running"
    assert result == {"greeting": "hello faults", "sum_of_squares": 14}
    assert run is not None and run.status == "done", run
    callback = run.steps[0]
    # The notebook's value is the run's result, shown there once (the step says so).
    assert (callback.kind, callback.state, callback.result_is_run_result) == ("callback", "resolved", True)
    assert run.result == result
    [recorded] = run.databricks_runs
    assert databricks_runs == [recorded.run_id]  # Databricks started exactly one run
    answered = [run_id for w in c.workers.values() for run_id in w.started]
    if point_name == "accepted_not_recorded":
        # Both workers' run-now reached Databricks; the token made them one run.
        assert answered == [recorded.run_id, recorded.run_id]
    else:
        assert answered == [recorded.run_id]


# -- a worker process SIGKILLed mid-step, on Postgres ------------------------------------


def test_a_worker_process_killed_mid_step_is_taken_over_on_postgres(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process, really killed: a worker (``python -m tests.sigkill_worker``, i.e.
    ``python -m app``, configured by its environment) is SIGKILLed while one of its
    steps runs. The other worker -- this test's service, on the same database -- takes
    the run over once the dead worker's lease (``DARA_LEASE``) lapses, executes the step
    again (it was never recorded) and finishes the run. Only a durable backend can do
    this: the in-process server dies with its process."""
    marker = tmp_path / "step-pids"
    settings = make_settings(tmp_path / "survivor", postgres_dsn=postgres_dsn, lease=LEASE, deploy_on_start=False)
    # The survivor runs the embedded workspace, which the victim uses, and the victim's pipelines.
    with running_service(settings, pipelines=WORKER_PIPELINES) as survivor:
        assert survivor.runtime.embedded is not None
        port = _free_listener()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DARA_", "DATABRICKS_", "RESONATE_"))}
        env |= {
            "DARA_POSTGRES_DSN": postgres_dsn,
            "DARA_LEASE": f"PT{LEASE.total_seconds():g}S",
            "DARA_STATE_DIR": str(tmp_path / "victim"),
            "DARA_PORT": str(port.getsockname()[1]),
            "DARA_DEPLOY_ON_START": "false",
            "DATABRICKS_HOST": survivor.runtime.embedded.host,
            "DATABRICKS_TOKEN": LOCAL_TOKEN,
            BLOCK: "1",
        }
        port.close()
        with (tmp_path / "victim.log").open("w") as log:
            victim = subprocess.Popen(
                [sys.executable, "-m", "tests.sigkill_worker"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log
            )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{env['DARA_PORT']}", timeout=30) as victim_http:
                deadline = time.monotonic() + 60
                while not _answers(victim_http):
                    assert victim.poll() is None, (tmp_path / "victim.log").read_text()
                    assert time.monotonic() < deadline, "the victim did not start in 60 s"
                    time.sleep(0.1)
                body = {"pipeline": "blocks_in_a_step", "id": "sigkill", "params": {"marker": str(marker)}}
                started = victim_http.post("/runs", json=body)
                assert started.status_code == 201, started.text
            deadline = time.monotonic() + 30
            while not marker.exists() or not marker.read_text():
                assert time.monotonic() < deadline, "the victim never ran the step"
                time.sleep(0.02)
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)

            run = survivor.wait_for("sigkill", timeout=30)  # its lease (2 s) lapses well before
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()

    assert victim.returncode == -signal.SIGKILL
    assert (run["status"], run["result"]) == ("done", os.getpid()), run
    assert marker.read_text().split() == [str(victim.pid), str(os.getpid())]  # once each


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/health").status_code == 200
    except httpx.TransportError:
        return False


# -- a restart of the in-process default ---------------------------------------------------


def test_a_restart_of_the_in_process_default_says_which_runs_it_lost(tmp_path: Path) -> None:
    """The in-process server keeps nothing across a restart, and the service must not
    pretend otherwise: the lost run is a 404 that says "no run", and the lost run's
    late callback is a 404 that names the restart as the likely cause -- which the
    notebook's callback cell reports as a refusal instead of retrying. The same id
    can then be started afresh (201, a new run, not the old one)."""
    state = tmp_path / "state"
    with running_service(make_settings(state)) as before:
        assert before.http.get("/health").json()["resonate"] == "in-process"
        started = before.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "lost"})
        assert started.status_code == 201, started.text
        before.wait_until("lost", "waiting")

    with running_service(make_settings(state)) as after:
        run = after.http.get("/runs/lost")
        callback = after.http.post("/resolve", json={"id": "lost:1", "value": 1, "token": sign(after.http, "lost:1")})
        listed = after.http.get("/runs", params={"limit": 100}).json()["runs"]
        again = after.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "lost"})

    assert run.status_code == 404
    assert run.json()["detail"] == "no run 'lost'; start one with POST /runs"
    assert callback.status_code == 404
    assert callback.json()["detail"] == (
        "no run 'lost': it was never started, or the in-process server that held it was restarted"
    )
    assert "lost" not in [r["id"] for r in listed]
    assert again.status_code == 201 and again.json()["status"] in ("running", "waiting")


# -- a step that outlives its lease on the in-process default ------------------------------


@pipeline
def runs_a_long_step(ctx: Context) -> Generator[Any, Any, int]:
    """One step that runs until the test ends it; returns how many times the step body ran."""
    return (yield ctx.run(long_step))


LONG_STEP_CALLS: list[str] = []
LONG_STEP_STARTED = threading.Event()
#: Set by the test: the step may end.
LONG_STEP_ENDS = threading.Event()


def long_step() -> int:
    LONG_STEP_CALLS.append("called")
    LONG_STEP_STARTED.set()
    assert LONG_STEP_ENDS.wait(60), "the test never let the step end"
    return len(LONG_STEP_CALLS)


class MovableClock:
    """The in-process server's clock (ms since the epoch), which a test moves ahead."""

    def __init__(self) -> None:
        self.ahead = 0

    def __call__(self) -> int:
        return now_ms() + self.ahead

    def move(self, by: timedelta) -> int:
        """Move ``by`` ahead; the time the clock reads now."""
        self.ahead += int(by.total_seconds() * 1000)
        return self()


def test_a_step_that_outlives_any_lease_runs_once_on_the_in_process_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On embedded defaults nothing else can take a task over, so a lease must not lapse
    while its own process is still working on it: a SQL statement or a throttled run-now
    that outlasts the SDK's 60 s lease (or DARA_LEASE) would be started a second time.

    While the step runs, the server's clock is moved an hour ahead, and the test waits
    for the server's sweep to have run at that time: a lease of an hour or less has
    lapsed then, and the sweep has handed the task out again.
    """
    clock = MovableClock()
    swept_at: list[int] = []

    def network_on_the_clock(settings: Settings, pid: str) -> InProcessServer:
        server = InProcessServer(pid=pid, group=app.runtime.GROUP, clock=clock)
        sweep = server.state.tick

        def tick(now: int) -> None:
            sweep(now)
            swept_at.append(now)

        server.state.tick = tick  # type: ignore[method-assign]
        return server

    monkeypatch.setattr(app.runtime, "resonate_network", network_on_the_clock)
    LONG_STEP_CALLS.clear()
    LONG_STEP_STARTED.clear()
    LONG_STEP_ENDS.clear()
    settings = make_settings(tmp_path, deploy_on_start=False)
    try:
        with running_service(settings, pipelines=(*WITH_TEST_PIPELINES, runs_a_long_step)) as service:
            started = service.http.post("/runs", json={"pipeline": "runs_a_long_step", "id": "long"})
            assert started.status_code == 201, started.text
            assert LONG_STEP_STARTED.wait(30), "the step never started"
            server = service.runtime.local_server
            assert server is not None
            held = server.task_record("long")
            moved_to = clock.move(timedelta(hours=1))
            deadline = time.monotonic() + 30
            while not any(now >= moved_to for now in swept_at):
                assert time.monotonic() < deadline, "the server never swept on the moved clock"
                time.sleep(0.02)
            after_the_sweep = server.task_record("long")
            LONG_STEP_ENDS.set()
            run = service.wait_for("long", timeout=30)
    finally:
        LONG_STEP_ENDS.set()  # a step left waiting must not outlive the test
    assert held is not None and held["state"] == "acquired", held
    assert after_the_sweep == held, "the sweep took the task from the worker still running its step"
    assert LONG_STEP_CALLS == ["called"], f"the step ran {len(LONG_STEP_CALLS)} times"
    assert (run["status"], run["result"]) == ("done", 1), run


# -- Databricks API faults at the HTTP boundary, through the service ------------------------

RUN_NOW = "/api/2.2/jobs/run-now"
GET_RUN = "/api/2.2/jobs/runs/get"
LIST_RUNS = "/api/2.2/jobs/runs/list"
JOB_ID = 4242
#: databricks-sdk's per-request timeout in these tests; a longer Delay is a read timeout.
HTTP_TIMEOUT = 1


class RecordingClock(RealClock):
    """databricks-sdk's clock, noting each wait its retries ask for (and still waiting it)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        super().sleep(seconds)


class IdempotentJobs:
    """run-now, runs/get and runs/list as Databricks behaves: one run per idempotency
    token, and a run that goes on running (the test plays the notebook)."""

    def __init__(self, double: DatabricksDouble) -> None:
        self.double = double
        self.runs: dict[str, int] = {}
        #: Answers run-now gives before it starts the run.
        self.refusals: list[Response] = []
        #: The clock of the service's databricks-sdk clients (faulty_service gives it them).
        self.sdk_clock = RecordingClock()
        #: The result runs/get reports once the run has ended ("FAILED", ...); None: running.
        self.ended: str | None = None
        #: While set, runs/get and runs/list answer 503: the jobs API is down.
        self.down = threading.Event()
        self.lock = threading.Lock()
        double.route("POST", RUN_NOW, self.run_now)
        double.route("GET", GET_RUN, self.get_run)
        double.route("GET", LIST_RUNS, self.list_runs)

    def run_now(self, request: RecordedRequest) -> dict[str, Any] | Response:
        with self.lock:  # also reached after a Delay the client gave up on, as on Databricks
            if self.refusals:
                return self.refusals.pop(0)
            run_id = self.runs.setdefault(request.json["idempotency_token"], 7700 + len(self.runs))
        return {"run_id": run_id, "number_in_job": run_id}

    def get_run(self, request: RecordedRequest) -> dict[str, Any] | Response:
        if self.down.is_set():
            return unavailable()
        run_id = int(request.query["run_id"][0])
        ended = {"life_cycle_state": "TERMINATED", "result_state": self.ended, "state_message": "Workload failed"}
        run = recorded_run(
            host=self.double.url,
            job_id=JOB_ID,
            run_id=run_id,
            run_name="dara-faults",
            notebook_path="/Workspace/Shared/dara/faults",
            **(ended if self.ended else {"life_cycle_state": "RUNNING"}),
        )
        return run | {"run_type": "JOB_RUN"}

    def list_runs(self, request: RecordedRequest) -> dict[str, Any] | Response:
        """The active runs, as the run watchers list them (app.active_runs): every run
        started, until the runs have ended."""
        if self.down.is_set():
            return unavailable()
        with self.lock:
            ids = [] if self.ended else sorted(set(self.runs.values()), reverse=True)
        listed = []
        for run_id in ids:
            run = recorded_run(
                host=self.double.url,
                job_id=JOB_ID,
                run_id=run_id,
                run_name="dara-faults",
                notebook_path="/Workspace/Shared/dara/faults",
                life_cycle_state="RUNNING",
            )
            del run["tasks"]  # runs/list leaves them out unless asked to expand them
            listed.append(run | {"run_type": "JOB_RUN"})
        return {"runs": listed, "has_more": False} if listed else {"has_more": False}


@contextmanager
def faulty_service(
    double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> Iterator[tuple[Service, IdempotentJobs]]:
    """The service on a "real" workspace (the double), with short SDK timeouts.

    DARA has no setting for databricks-sdk's per-request HTTP timeout (60 s), so the
    test shortens it where the client is built, to make a Delay a timeout quickly; the
    clients get the clock of ``jobs``, which notes how long their retries wait.
    """
    monkeypatch.setenv("DATABRICKS_TOKEN", "test")
    jobs = IdempotentJobs(double)
    monkeypatch.setattr(
        app.workspace.client,
        "Config",
        functools.partial(Config, http_timeout_seconds=HTTP_TIMEOUT, clock=jobs.sdk_clock),
    )
    settings = make_settings(
        tmp_path, databricks_host=double.url, deploy_on_start=False, databricks_retry_timeout=1, **overrides
    )
    with running_service(settings) as service:
        yield service, jobs


@pytest.fixture
def faulty(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Service, DatabricksDouble, IdempotentJobs]]:
    with faulty_service(databricks_double, tmp_path, monkeypatch) as (service, jobs):
        yield service, databricks_double, jobs


def start_job_run(service: Service, run_id: str) -> None:
    body = {"pipeline": "notebook_job", "id": run_id, "params": {"job": str(JOB_ID), "params": {"day": "mon"}}}
    response = service.http.post("/runs", json=body)
    assert response.status_code == 201, response.text


def wait_for_step(service: Service, run_id: str, name: str, timeout: float = 30) -> dict[str, Any]:
    """The run once its step ``name`` has settled (or the run has ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = service.http.get(f"/runs/{run_id}").raise_for_status().json()
        settled = [s for s in run["steps"] if s["name"] == name and s["state"] != "pending"]
        if settled or run["status"] not in ("running", "waiting"):
            return run
        time.sleep(0.02)
    raise TimeoutError(f"step {name} of {run_id} did not settle in {timeout}s")


def call_back(service: Service, double: DatabricksDouble, value: Any) -> dict[str, Any]:
    """Settle the callback as the notebook would, with the widgets run-now carried."""
    widgets = double.requests_to("POST", RUN_NOW)[-1].json["notebook_params"]
    body = {"id": widgets["promise_id"], "value": value, "token": widgets["callback_signature"]}
    return service.http.post("/resolve", json=body).raise_for_status().json()


def assert_one_run_now_effect(double: DatabricksDouble, jobs: IdempotentJobs) -> list[RecordedRequest]:
    requests = double.requests_to("POST", RUN_NOW)
    assert requests, "run-now was never sent"
    assert all(r.json == requests[0].json for r in requests), "a retry changed the request"
    assert len({r.json["idempotency_token"] for r in requests}) == 1
    assert len(jobs.runs) == 1, f"Databricks started {len(jobs.runs)} runs"
    return requests


RUN_NOW_FAULTS = {
    "throttled_with_retry_after": [],  # answered by IdempotentJobs, which times the retry
    "unavailable_503": [unavailable(), unavailable()],
    "internal_error_500": [api_error(500, "INTERNAL_ERROR", "Unexpected failure in the jobs service")],
    "timeout": [Delay(HTTP_TIMEOUT + 1)],
    "connection_reset": [Drop()],
    "one_of_each": [throttled(), Drop(), Delay(HTTP_TIMEOUT + 1), unavailable()],
}


@pytest.mark.parametrize("fault", RUN_NOW_FAULTS)
def test_run_now_faults_are_retried_into_one_run(
    faulty: tuple[Service, DatabricksDouble, IdempotentJobs], fault: str
) -> None:
    """429, 5xx, read timeouts and dropped connections on run-now are retried -- by
    databricks-sdk within its retry timeout, then by the step -- always with the same
    request and idempotency token, so Databricks starts one run and the run completes."""
    service, double, jobs = faulty
    double.queue("POST", RUN_NOW, *RUN_NOW_FAULTS[fault])
    if fault == "throttled_with_retry_after":
        jobs.refusals.append(throttled(retry_after=2))
    run_id = f"dbx-{fault.replace('_', '-')}"

    start_job_run(service, run_id)
    run = wait_for_step(service, run_id, "run_job")
    assert run["status"] == "waiting", run
    settled = call_back(service, double, {"rows": 7})
    run = service.wait_for(run_id, timeout=30)

    assert settled["state"] == "resolved"
    assert (run["status"], run["result"]) == ("done", {"rows": 7}), run
    requests = assert_one_run_now_effect(double, jobs)
    assert len(requests) > 1 and double.queued("POST", RUN_NOW) == 0
    assert [r["run_id"] for r in run["databricks_runs"]] == list(jobs.runs.values())
    if fault == "throttled_with_retry_after":  # the client waited as long as it was told to
        assert jobs.sdk_clock.slept and jobs.sdk_clock.slept[0] >= 2, jobs.sdk_clock.slept


def test_run_now_unavailable_beyond_the_retry_policy_fails_the_run_clearly(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run-now that stays 503 fails the step once its retries are spent -- the SDK's
    within DARA_DATABRICKS_RETRY_TIMEOUT, then the step's -- with the step's name and
    attempts in the error, and the run fails now instead of waiting for a callback from
    a job that never started."""
    double = databricks_double
    with faulty_service(double, tmp_path, monkeypatch, step_retries=1) as (service, jobs):
        double.queue("POST", RUN_NOW, *[unavailable()] * 200)

        start_job_run(service, "dbx-down")
        run = service.wait_for("dbx-down", timeout=60)

    assert run["status"] == "failed", run
    assert run["error"].startswith("run_job: TimeoutError: Timed out after 0:00:01"), run["error"]
    assert "(after 2 attempts)" in run["error"]
    callback = run["steps"][0]
    assert (callback["kind"], callback["state"]) == ("callback", "rejected")
    assert callback["error"].startswith("abandoned: the pipeline failed first")
    requests = double.requests_to("POST", RUN_NOW)
    assert len({r.json["idempotency_token"] for r in requests}) == 1
    assert jobs.runs == {}
    assert double.queued("POST", RUN_NOW) > 0, "run-now was tried until the 503s ran out, not until retries did"


def test_a_refused_run_now_fails_at_once_with_a_hint(
    faulty: tuple[Service, DatabricksDouble, IdempotentJobs],
) -> None:
    """A 400 will not get better by retrying: one request, and the API's own message."""
    service, double, _ = faulty
    double.queue("POST", RUN_NOW, api_error(400, "INVALID_PARAMETER_VALUE", "Job 4242 does not take notebook_params"))

    start_job_run(service, "dbx-refused")
    run = service.wait_for("dbx-refused", timeout=30)

    assert run["status"] == "failed"
    assert run["error"] == (
        "run_job: InvalidParameterValue: Job 4242 does not take notebook_params (hint: fix the parameter named above)"
    )
    assert len(double.requests_to("POST", RUN_NOW)) == 1


def wait_for_requests(double: DatabricksDouble, method: str, path: str, count: int = 1, timeout: float = 30) -> None:
    """Until the double has had ``count`` requests to ``method path``."""
    deadline = time.monotonic() + timeout
    while len(double.requests_to(method, path)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} {method} {path} not seen in {timeout}s: {double.requests}")
        time.sleep(0.02)


def test_runs_list_faults_do_not_stop_the_watcher(
    faulty: tuple[Service, DatabricksDouble, IdempotentJobs],
) -> None:
    """The watchers' listing of active runs meets a 429, a 503, a reset and a timeout;
    they look again an interval later each time, until a listing shows the run still
    running -- never reading the run on its own -- and the callback then completes the run."""
    service, double, _ = faulty
    double.queue("GET", LIST_RUNS, throttled(), unavailable(), Drop(), Delay(HTTP_TIMEOUT + 1))

    start_job_run(service, "dbx-watch")
    deadline = time.monotonic() + 60
    while double.queued("GET", LIST_RUNS) or not service.runtime.active_runs.listings:
        assert time.monotonic() < deadline, "the watcher stopped listing after a fault"
        time.sleep(0.05)
    call_back(service, double, "ok")
    run = service.wait_for("dbx-watch", timeout=30)

    assert (run["status"], run["result"]) == ("done", "ok")
    assert double.requests_to("GET", GET_RUN) == []


def test_a_watcher_that_cannot_reach_databricks_does_not_hold_the_run_back(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs API stays down past the watcher's retries: the callback still
    completes the run."""
    double = databricks_double
    with faulty_service(double, tmp_path, monkeypatch, step_retries=1) as (service, jobs):
        jobs.down.set()

        start_job_run(service, "dbx-watch-down")
        wait_for_requests(double, "GET", LIST_RUNS, 2, timeout=60)  # two looks have failed
        call_back(service, double, "ok")
        run = service.wait_for("dbx-watch-down", timeout=30)

    assert (run["status"], run["result"]) == ("done", "ok")


def test_the_watcher_outlives_a_databricks_outage(
    databricks_double: DatabricksDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs API is down for longer than one look's retries, then says the job failed
    without calling back: the watcher must still fail the run (README: "A job that
    ends without calling back fails the run within two DARA_WATCH_INTERVALs")."""
    monkeypatch.setattr(app.watchers, "GRACE_SECONDS", 0)
    double = databricks_double
    with faulty_service(double, tmp_path, monkeypatch, step_retries=1) as (service, jobs):
        jobs.down.set()
        jobs.ended = "FAILED"

        start_job_run(service, "dbx-outage")
        wait_for_requests(double, "GET", LIST_RUNS)  # its first look gave up
        jobs.down.clear()
        run = service.http.get("/runs/dbx-outage", params={"wait": 4}).json()

    assert run["status"] == "failed", run
    assert "ended FAILED without calling back" in run["error"]
