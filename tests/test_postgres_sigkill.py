"""Real worker processes, really SIGKILLed at each point of the notebook loop, on Postgres.

``tests/test_faults.py`` kills a worker at these points by cutting its connection in the
test's own process; here the victim is a process of its own (``python -m
tests.sigkill_worker``, i.e. ``python -m app`` configured by its environment) and dies of
SIGKILL, with whatever it held: its step threads, its database connections, its leases.

Two worker processes share one database and one embedded workspace (run by the test,
as the Databricks workspace both would reach), behind one front door -- the address
notebooks call back, forwarding to a live worker, as a load balancer would. Two, both
alive, because which worker resumes a run is the database's choice (any worker of the
group may claim it): the worker that reaches the point first holds there
(``DARA_TEST_HOLD_AT``, see :mod:`tests.sigkill_worker`) and is killed, the other one is
the survivor. It must finish the run once the victim's lease (``DARA_LEASE``, shortened
here) lapses: the notebook's value as the result, and exactly one Databricks run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from databricks.sdk import WorkspaceClient

from app.settings import PROJECT_ROOT
from app.workspace.deploy import deploy_demo
from app.workspace.embedded import LOCAL_TOKEN, EmbeddedWorkspace
from tests.harness import SECRET
from tests.sigkill_worker import HOLD_AT, HOLD_MARKER, HOLD_POINTS, RUN_NOW_LOG

#: The workers' task lease: how long the victim's work stays out of the survivor's reach.
LEASE_SECONDS = 2
DEMO_JOB = "dara-demo"
NOTEBOOK_DIR = "/Workspace/Shared/dara"
#: What the demo notebook calls back with for the parameters the run is started with.
NOTEBOOK_VALUE = {"greeting": "hello sigkill", "sum_of_squares": 14}
POINTS = ["before_run_now", "accepted_not_recorded", "suspended", "callback_arrived"]


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return listener


def _until(condition: Any, what: str, timeout: float = 60) -> Any:
    """Poll ``condition`` until it returns something truthy; fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:g} s"
        time.sleep(0.05)
    return found


class FrontDoor:
    """The address notebooks call back: forwards each request to ``target``, a live
    worker, or answers 503 while there is none -- as a load balancer does, and as the
    notebook's callback cell retries."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.listener = _listener()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, content_type, content = 503, "text/plain", b"no live worker behind the front door"
        if (target := self.target) is not None:
            try:
                async with httpx.AsyncClient(base_url=target, timeout=30) as client:
                    answer = await client.request(
                        scope["method"],
                        scope["path"],
                        params=scope["query_string"].decode(),
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                status, content = answer.status_code, answer.content
                content_type = answer.headers.get("content-type", content_type)
            except httpx.TransportError:
                pass  # the worker died under the request: a 503, which the notebook retries
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    @contextmanager
    def serving(self) -> Iterator[FrontDoor]:
        server = uvicorn.Server(uvicorn.Config(self, lifespan="off", log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [self.listener]}, daemon=True)
        thread.start()
        try:
            _until(lambda: server.started, "the front door starting", timeout=10)
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            self.listener.close()


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    http: httpx.Client

    def answers(self) -> bool:
        try:
            return self.http.get("/health").status_code == 200
        except httpx.TransportError:
            assert self.process.poll() is None, f"worker {self.name} exited: {self.log.read_text()}"
            return False

    def run(self, run_id: str) -> dict[str, Any]:
        return self.http.get(f"/runs/{run_id}").raise_for_status().json()

    def wait_for(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        """Long-poll GET /runs/{id} until the run has finished."""

        def finished() -> dict[str, Any] | None:
            run = self.http.get(f"/runs/{run_id}", params={"wait": 5}).raise_for_status().json()
            return run if run["status"] not in ("running", "waiting") else None

        return _until(finished, f"run {run_id} finishing on worker {self.name}", timeout)


@contextmanager
def worker_process(name: str, tmp_path: Path, env: dict[str, str]) -> Iterator[WorkerProcess]:
    """``python -m tests.sigkill_worker`` on a free port; stopped (or its corpse reaped) at the end."""
    listener = _listener()
    port = listener.getsockname()[1]
    listener.close()
    log = tmp_path / f"{name}.log"
    env = env | {"DARA_STATE_DIR": str(tmp_path / name), "DARA_PORT": str(port)}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.sigkill_worker"], env=env, cwd=PROJECT_ROOT, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield WorkerProcess(name, process, url, log, http)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def databricks_runs(workspace: WorkspaceClient, job_id: int) -> list[int]:
    return sorted(run.run_id for run in workspace.jobs.list_runs(job_id=job_id))  # type: ignore[misc]


def run_now_answers(log: Path) -> list[tuple[int, int]]:
    """(pid, run id) of every run-now answer the workers had, in order."""
    if not log.exists():
        return []
    return [(int(pid), int(run_id)) for pid, run_id in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.parametrize("point", POINTS)
def test_a_worker_process_sigkilled_at_each_point_of_the_loop_is_taken_over(
    point: str, postgres_dsn: str, tmp_path: Path
) -> None:
    """Whichever point the worker process dies at, the other one finishes the run:

    * ``before_run_now``: ``run_job`` has begun, Databricks has not heard of the run. The
      survivor executes ``run_job``: one run.
    * ``accepted_not_recorded``: Databricks accepted the run, the worker died before the
      step was recorded. The survivor executes ``run_job`` again with the same
      idempotency token and gets the *same* run back.
    * ``suspended``: the run waits for the notebook, nothing holds it. The front door
      has no worker behind it until the kill, so the callback cannot arrive before;
      the notebook's callback cell retries until it does.
    * ``callback_arrived``: the callback settled the wait, the run resumed, and its
      worker died in the next step (``notify``). The survivor replays: the callback's
      value is kept and ``run_job`` is not executed again.
    """
    held, answers_log = tmp_path / "held-by", tmp_path / "run-now-answers"
    run_id = f"sigkill-{point.replace('_', '-')}"
    with ExitStack() as stack:
        embedded = EmbeddedWorkspace(tmp_path / "workspace").start()
        stack.callback(embedded.stop)
        workspace = WorkspaceClient(host=embedded.host, token=LOCAL_TOKEN, auth_type="pat")
        job_id = deploy_demo(workspace, NOTEBOOK_DIR, DEMO_JOB)
        front = stack.enter_context(FrontDoor().serving())

        env = {k: v for k, v in os.environ.items() if not k.startswith(("DARA_", "DATABRICKS_", "RESONATE_"))}
        env |= {
            "DARA_POSTGRES_DSN": postgres_dsn,
            "DARA_LEASE": f"PT{LEASE_SECONDS}S",
            "DARA_DEPLOY_ON_START": "false",
            "DARA_PUBLIC_URL": front.url,
            "DARA_CALLBACK_SECRET": SECRET,  # one secret: either worker accepts the other's callback
            "DARA_STEP_RETRY_DELAY": "0.05",
            "DATABRICKS_HOST": embedded.host,
            "DATABRICKS_TOKEN": LOCAL_TOKEN,
            HOLD_MARKER: str(held),
            RUN_NOW_LOG: str(answers_log),
        }
        if point in HOLD_POINTS:
            env[HOLD_AT] = point
        workers = [stack.enter_context(worker_process(name, tmp_path, env)) for name in ("first", "second")]
        for worker in workers:
            _until(worker.answers, f"worker {worker.name} starting")
        first = workers[0]
        if point != "suspended":
            front.target = first.url

        body = {
            "pipeline": "notebook_job",
            "id": run_id,
            "params": {"job": DEMO_JOB, "params": {"name": "sigkill", "count": "4"}},
        }
        started = first.http.post("/runs", json=body)
        assert started.status_code == 201, started.text

        # The victim is at its point, and stays there: read what the run looks like then.
        if point == "suspended":
            victim = first
            at_point = _until(lambda: (run := first.run(run_id))["status"] == "waiting" and run, "the run waiting")
        else:
            holder = int(_until(lambda: held.exists() and held.read_text().strip(), f"a worker holding at {point}"))
            [victim] = [w for w in workers if w.process.pid == holder]
            at_point = victim.run(run_id)
        [survivor] = [w for w in workers if w is not victim]
        runs_at_point = databricks_runs(workspace, job_id)

        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=10)
        front.target = survivor.url

        run = survivor.wait_for(run_id)  # the victim's lease lapses well before
        runs = databricks_runs(workspace, job_id)

    assert victim.process.returncode == -signal.SIGKILL
    # The kill landed where it was meant to.
    job_step = next((s for s in at_point["steps"] if s["name"] == "run_job"), None)
    match point:
        case "before_run_now":
            assert job_step is None or job_step["state"] == "pending", at_point
            assert runs_at_point == []
        case "accepted_not_recorded":
            assert job_step is None or job_step["state"] == "pending", at_point
            assert len(runs_at_point) == 1
        case "suspended":
            assert at_point["steps"][0]["state"] == "pending", at_point
        case "callback_arrived":
            assert (at_point["status"], at_point["steps"][0]["state"]) == ("running", "resolved"), at_point
    # The survivor finished it: the notebook's value, one Databricks run.
    assert (run["status"], run["result"]) == ("done", NOTEBOOK_VALUE), run
    callback = run["steps"][0]
    assert (callback["kind"], callback["state"]) == ("callback", "resolved"), run
    [recorded] = [r["run_id"] for r in run["databricks_runs"]]
    assert runs == [recorded]  # Databricks started exactly one run
    answers = run_now_answers(answers_log)
    if point == "accepted_not_recorded":
        # Both workers' run-now reached Databricks; the idempotency token made them one run.
        assert answers == [(victim.process.pid, recorded), (survivor.process.pid, recorded)]
    elif point == "before_run_now":
        assert answers == [(survivor.process.pid, recorded)]
    else:
        assert [run_now for _, run_now in answers] == [recorded]
