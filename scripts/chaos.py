#!/usr/bin/env python3
"""Kill DARA with SIGKILL at each point of the notebook loop, restart it, and count.

    python scripts/chaos.py --resonate-url http://localhost:8001
    python scripts/chaos.py --postgres-dsn postgresql://dara@localhost/dara --runs 5

For each kill point the script starts the service (``python -m app``) on the durable
backend it is given, starts ``--runs`` runs of ``notebook_job`` on the demo job, kills
the service with SIGKILL when the point is observed, keeps it down for ``--down``
seconds, starts it again and waits for every run. Then it prints a table:

    point                  runs  at point  completed  databricks runs  lost callbacks

* **runs / completed**: runs started, and runs that ended ``done`` with the notebook's
  value.
* **databricks runs**: runs of the job the workspace started during the point. More
  than ``runs`` means a run was started twice.
* **lost callbacks**: runs whose Databricks run ended SUCCESS -- the demo notebook
  succeeds only once DARA accepted its callback -- but whose callback step was not
  resolved by the end.
* **at point**: runs that were really at the point when the kill landed, judged
  afterwards from timestamps (see below). The script kills by observation from
  outside, so it can only aim; this column says where it hit.

There is no fault hook in the service, so each point is reached by watching it:

* ``before_start``: kill as soon as ``POST /runs`` answered. Hit when the run's
  Databricks run started after the kill (so the restarted service started it).
  Usually hit: the pipeline needs a few milliseconds to get to run-now.
* ``accepted_not_recorded``: poll the job's runs and kill the moment a new one shows.
  Hit when Databricks started it before the kill but ``run_job`` was recorded after it
  (re-executed, answered with the same run by its idempotency token). The window is
  milliseconds wide, so expect few hits; raise ``--runs`` to get some.
* ``suspended``: kill once every run is ``waiting``. Hit when the callback was settled
  after the kill: the notebook's callback cell retried through the outage. Precise.
* ``callback_arrived``: kill the moment a run's callback step is settled. Hit when the
  run finished after the kill, i.e. the step after the callback ran on the restarted
  service. ``notify`` is quick, so hits are not guaranteed either.

After a SIGKILL the backend still holds the dead process's task leases until they
lapse (Resonate's default lease is a minute), so the runs of every point but
``suspended`` resume about a minute after the restart; ``--timeout`` allows for that.

The in-process default is refused: it keeps nothing across a restart, so every kill
would lose every run (README, "What the in-process default does not keep").

With the embedded workspace (no ``DATABRICKS_HOST``), the workspace lives inside the
service and dies with it: notebooks keep running in their own processes and call back,
but what the restarted workspace says about runs that were in flight is brickhouse's
business. Point the service at a real workspace (``DATABRICKS_HOST`` and credentials in
the environment, ``DARA_PUBLIC_URL`` reachable from it) for numbers that mean what they
would in production. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POINTS = ("before_start", "accepted_not_recorded", "suspended", "callback_arrived")
FINISHED = {"done", "failed", "cancelled", "timed_out"}
NAME = "chaos"
COUNT = 5
EXPECTED = {"greeting": f"hello {NAME}", "sum_of_squares": sum(i * i for i in range(COUNT))}


# -- HTTP --------------------------------------------------------------------------------


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 90) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})}, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


class Dara:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        token = os.environ.get("DARA_API_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, body: Any = None, timeout: float = 90) -> Any:
        return call(method, self.url + path, body, self.headers, timeout)

    def up(self) -> bool:
        try:
            self("GET", "/health", timeout=2)
        except (urllib.error.URLError, OSError):
            return False
        return True


class Workspace:
    """The jobs API of the workspace the service uses (read from its /health)."""

    def __init__(self, host: str) -> None:
        self.host = host.rstrip("/")
        token = os.environ.get("DATABRICKS_TOKEN", "brickhouse-local")  # the embedded one wants any
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **query: Any) -> Any:
        return call("GET", f"{self.host}{path}?{urllib.parse.urlencode(query)}", headers=self.headers)

    def job_id(self, name: str) -> int:
        jobs = [j for j in self.get("/api/2.2/jobs/list", name=name).get("jobs", []) if j["settings"]["name"] == name]
        if len(jobs) != 1:
            sys.exit(f"expected one job named {name!r} in {self.host}, found {len(jobs)}")
        return jobs[0]["job_id"]

    def runs(self, job_id: int) -> dict[int, dict[str, Any]]:
        runs: dict[int, dict[str, Any]] = {}
        query: dict[str, Any] = {"job_id": job_id, "limit": 25}
        while True:
            page = self.get("/api/2.2/jobs/runs/list", **query)
            runs |= {run["run_id"]: run for run in page.get("runs", [])}
            if not page.get("has_more") or not page.get("next_page_token"):
                return runs
            query["page_token"] = page["next_page_token"]


# -- the service -------------------------------------------------------------------------


@dataclass
class Service:
    env: dict[str, str]
    port: int
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def dara(self) -> Dara:
        return Dara(f"http://127.0.0.1:{self.port}")

    def start(self, timeout: float = 120) -> Workspace:
        self.starts += 1
        log = open(self.log_dir / f"service-{self.starts}.log", "wb")  # noqa: SIM115 -- the child keeps it
        self.process = subprocess.Popen([sys.executable, "-m", "app"], cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.dara.up():
            if self.process.poll() is not None:
                sys.exit(f"the service exited with {self.process.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                self.kill()
                sys.exit(f"the service was not healthy within {timeout}s; see {log.name}")
            time.sleep(0.1)
        return Workspace(self.dara("GET", "/health")["workspace"])

    def kill(self) -> float:
        """SIGKILL: no shutdown, no cleanup. Returns when it happened (epoch seconds)."""
        assert self.process is not None
        killed_at = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return killed_at

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def service_env(args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RESONATE_URL", "DARA_RESONATE_URL", "DARA_POSTGRES_DSN")}
    if args.resonate_url:
        env["RESONATE_URL"] = args.resonate_url
    else:
        env["DARA_POSTGRES_DSN"] = args.postgres_dsn
    env |= {
        "DARA_HOST": "127.0.0.1",
        "DARA_PORT": str(args.port),
        "DARA_STATE_DIR": str(args.state_dir),  # workspace and callback secret outlive the kills
        "DARA_DEMO_JOB_NAME": args.job,
        "PYTHONUNBUFFERED": "1",
    }
    return env


# -- one point ---------------------------------------------------------------------------


@dataclass
class Outcome:
    point: str
    runs: int = 0
    at_point: int = 0
    completed: int = 0
    databricks_runs: int = 0
    lost_callbacks: int = 0
    notes: list[str] = field(default_factory=list)


def step(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in view["steps"] if s["name"] == name), None)


def at(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def was_at_point(point: str, view: dict[str, Any], dbx: dict[int, dict[str, Any]], killed_at: float) -> bool:
    """Judge from timestamps where the run was when the kill landed."""
    job = step(view, "run_job")
    callback = step(view, "callback")
    started = [dbx[r["run_id"]]["start_time"] / 1000 for r in view["databricks_runs"] if r["run_id"] in dbx]
    recorded = at(job["finished_at"]) if job else None
    settled = at(callback["finished_at"]) if callback else None
    finished = at(view.get("finished_at"))
    if point == "before_start":
        return bool(started) and min(started) > killed_at
    if point == "accepted_not_recorded":
        return bool(started) and min(started) < killed_at and recorded is not None and recorded > killed_at
    if point == "suspended":
        return recorded is not None and recorded < killed_at and settled is not None and settled > killed_at
    return settled is not None and settled < killed_at and finished is not None and finished > killed_at


def wait_for(dara: Dara, run_id: str, timeout: float) -> dict[str, Any]:
    """The run once it finished (or the time is up); a 404 means the backend lost it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            view = dara("GET", f"/runs/{run_id}?wait=30")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            return {"id": run_id, "status": "lost", "error": "404: the backend has no such run",
                    "steps": [], "databricks_runs": [], "result": None}
        if view["status"] in FINISHED or time.monotonic() > deadline:
            return view


def trigger(point: str, dara: Dara, workspace: Workspace, job_id: int, ids: list[str], before: set[int]) -> None:
    """Return when ``point`` is observed (the caller kills at once)."""
    if point == "before_start":
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if point == "accepted_not_recorded":
            if set(workspace.runs(job_id)) - before:
                return
        else:
            views = [dara("GET", f"/runs/{run_id}") for run_id in ids]
            if point == "suspended" and all(v["status"] == "waiting" for v in views):
                return
            if point == "callback_arrived" and any(
                (s := step(v, "callback")) is not None and s["state"] != "pending" for v in views
            ):
                return
        time.sleep(0.005)
    print(f"  {point}: not observed within 120s; killing anyway", file=sys.stderr)


def run_point(point: str, service: Service, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(point, runs=args.runs)
    workspace = service.start()
    dara = service.dara
    job_id = workspace.job_id(args.job)
    before = set(workspace.runs(job_id))
    stamp = uuid.uuid4().hex[:6]
    ids = [f"chaos-{point.replace('_', '-')}-{stamp}-{n}" for n in range(args.runs)]
    params = {"job": args.job, "params": {"name": NAME, "count": str(COUNT)}}
    for run_id in ids:
        dara("POST", "/runs", {"pipeline": "notebook_job", "id": run_id, "params": params})
    trigger(point, dara, workspace, job_id, ids, before)
    killed_at = service.kill()
    print(f"  {point}: killed at {datetime.fromtimestamp(killed_at).time()}; down for {args.down}s", file=sys.stderr)
    time.sleep(args.down)
    workspace = service.start()
    deadline = time.monotonic() + args.timeout
    views = [wait_for(dara, run_id, max(1.0, deadline - time.monotonic())) for run_id in ids]
    dbx = workspace.runs(job_id)
    new = {run_id: run for run_id, run in dbx.items() if run_id not in before}
    outcome.databricks_runs = len(new)
    for view in views:
        outcome.at_point += was_at_point(point, view, dbx, killed_at)
        if view["status"] == "done" and view["result"] == EXPECTED:
            outcome.completed += 1
        else:
            outcome.notes.append(f"{view['id']}: {view['status']} {view.get('error') or ''}".strip())
        callback = step(view, "callback")
        succeeded = [
            r for r in view["databricks_runs"]
            if (dbx.get(r["run_id"], {}).get("state") or {}).get("result_state") == "SUCCESS"
        ]
        if succeeded and (callback is None or callback["state"] != "resolved"):
            outcome.lost_callbacks += 1
    service.stop()
    return outcome


def table(outcomes: list[Outcome]) -> str:
    head = ("point", "runs", "at point", "completed", "databricks runs", "lost callbacks")
    rows = [head] + [
        (o.point, str(o.runs), str(o.at_point), str(o.completed), str(o.databricks_runs), str(o.lost_callbacks))
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="SIGKILL DARA at each point of the notebook loop on a durable backend, and count what survived.",
        epilog="Exit status 0 when every run completed, each started one Databricks run and no callback was lost.",
    )
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--resonate-url", metavar="URL", help="Resonate server, e.g. http://localhost:8001")
    backend.add_argument("--postgres-dsn", metavar="DSN", help="Postgres with the resonate-pg schema")
    parser.add_argument("--points", nargs="+", choices=POINTS, default=list(POINTS), help="kill points (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="runs per point (default: 3)")
    parser.add_argument("--down", type=float, default=3.0, help="seconds the service stays dead (default: 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the runs after a restart")
    parser.add_argument("--port", type=int, default=8765, help="port the service listens on (default: 8765)")
    parser.add_argument("--job", default="dara-demo", help="demo job to run (default: dara-demo)")
    parser.add_argument(
        "--state-dir", type=Path, default=PROJECT_ROOT / ".dara" / "chaos",
        help="DARA_STATE_DIR for the service (default: .dara/chaos)",
    )
    args = parser.parse_args(argv)
    if not (args.resonate_url or args.postgres_dsn):
        parser.error(
            "a durable backend is required: pass --resonate-url or --postgres-dsn. The in-process "
            "default keeps nothing across a restart, so every kill would lose every run."
        )
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.state_dir / f"logs-{datetime.now():%Y%m%d-%H%M%S}"
    log_dir.mkdir()
    service = Service(service_env(args), args.port, log_dir)
    if service.dara.up():
        sys.exit(f"something already answers on port {args.port}; pick another with --port")
    outcomes = []
    try:
        for point in args.points:
            print(f"{point}: {args.runs} runs", file=sys.stderr)
            outcomes.append(run_point(point, service, args))
    finally:
        service.stop()
    print(table(outcomes))
    for outcome in outcomes:
        for note in outcome.notes:
            print(f"{outcome.point}: {note}")
    print(f"service logs: {log_dir}")
    clean = all(
        o.completed == o.runs and o.databricks_runs == o.runs and o.lost_callbacks == 0 for o in outcomes
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
