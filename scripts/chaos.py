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

A second table has a row per run: its status, and each Databricks run it started with
that run's state. A run that started no Databricks run, or one whose Databricks run has
no ``start_time``, is ``never started``. Fields missing from a Databricks run (no
``start_time``, ``end_time`` or ``state``) are read as unknown, never as an error. The
tables always print: a point that fails is a row with a note, and Ctrl-C prints what
the script has seen so far.

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

The in-process default is refused before anything starts: it keeps nothing across a
restart, so every kill would lose every run (README, "What the in-process default does
not keep"). A service that reports another backend in ``/health`` than the one given
(a ``.env`` can do that) is refused too.

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
import re
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
NEVER_STARTED = "never started"


class Fatal(Exception):  # it says what it is
    """Nothing more can be measured (the service does not start, no demo job): stop, print the table."""


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
    """The jobs API of the workspace the service uses (see :meth:`Service.workspace_host`)."""

    def __init__(self, host: str) -> None:
        self.host = host.rstrip("/")
        token = os.environ.get("DATABRICKS_TOKEN", "brickhouse-local")  # the embedded one wants any
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **query: Any) -> Any:
        return call("GET", f"{self.host}{path}?{urllib.parse.urlencode(query)}", headers=self.headers)

    def job_id(self, name: str) -> int:
        jobs = [j for j in self.get("/api/2.2/jobs/list", name=name).get("jobs", []) if j["settings"]["name"] == name]
        if len(jobs) != 1:
            raise Fatal(f"expected one job named {name!r} in {self.host}, found {len(jobs)}")
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
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app"], cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        health: dict[str, Any] | None = None
        problem = "no answer"
        while health is None:
            if self.process.poll() is not None:
                raise Fatal(f"the service exited with {self.process.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                self.kill()
                raise Fatal(f"the service was not healthy within {timeout}s ({problem}); see {log.name}")
            try:
                health = self.dara("GET", "/health", timeout=2)
            except urllib.error.HTTPError as error:  # e.g. 503: up, but the backend is not
                problem = f"/health answered {error.code}: {error.read().decode(errors='replace')[:300]}"
                time.sleep(0.5)
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.1)
        wanted = "server" if self.env.get("RESONATE_URL") else "postgres"
        if health.get("resonate") != wanted:
            self.stop()
            raise Fatal(
                f"the service runs on the {health.get('resonate')!r} Resonate backend, not the {wanted!r} "
                f"one given (does {PROJECT_ROOT / '.env'} set another?); on the in-process one every "
                "kill would lose every run"
            )
        return Workspace(self.workspace_host(health.get("workspace"), Path(log.name)))

    def workspace_host(self, kind: str | None, log: Path) -> str:
        """Where the service's workspace is. ``/health`` names only its kind (it is open to anyone):
        a real one is ``DATABRICKS_HOST``; the embedded one logs its address as it starts."""
        if kind == "databricks":
            host = self.env.get("DATABRICKS_HOST") or ""
            if not host:
                self.stop()
                raise Fatal("the service uses a real workspace: export DATABRICKS_HOST (and DATABRICKS_TOKEN)")
            return host if "://" in host else f"https://{host}"
        found = re.search(r"embedded Databricks workspace at (\S+)", log.read_text(errors="replace"))
        if not found:
            self.stop()
            raise Fatal(f"the service did not log its embedded workspace's address; see {log}")
        return found.group(1)

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
    """One point, filled in as it goes, so a point cut short still reports what it saw.

    ``views`` are the runs as ``GET /runs/{id}`` answered at the end, ``dbx`` the job's
    Databricks runs (``runs/list`` payloads) at the end, ``before`` those from before the
    point. Every count is worked out from them and reads missing fields as unknown.
    """

    point: str
    ids: list[str] = field(default_factory=list)  # the runs started
    killed_at: float | None = None
    before: set[int] = field(default_factory=set)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    dbx: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return len(self.ids)

    @property
    def at_point(self) -> int:
        if self.killed_at is None:
            return 0
        return sum(was_at_point(self.point, view, self.dbx, self.killed_at) for view in self.views.values())

    @property
    def completed(self) -> int:
        return sum(completed(view) for view in self.views.values())

    @property
    def databricks_runs(self) -> int:
        return len(set(self.dbx) - self.before)

    @property
    def lost_callbacks(self) -> int:
        return sum(lost_callback(view, self.dbx) for view in self.views.values())

    def failures(self) -> list[str]:
        """A note per run that did not complete."""
        return [
            f"{run_id}: {view.get('status') or 'unknown'} {view.get('error') or ''}".strip()
            for run_id, view in self.views.items()
            if not completed(view)
        ]

    def rows(self) -> list[tuple[str, ...]]:
        """(point, run, status, at point, Databricks run, its state), a row per Databricks run.

        A run that started none is one row, ``never started``; so is a run not yet seen
        (``not checked``: the point was cut short). Databricks runs of the job that no run
        claims (a second start the service lost track of) are rows with run ``-``.
        """
        rows = []
        claimed: set[int] = set()
        for run_id in self.ids:
            view = self.views.get(run_id)
            if view is None:
                rows.append((self.point, run_id, "not checked", "", "-", ""))
                continue
            hit = self.killed_at is not None and was_at_point(self.point, view, self.dbx, self.killed_at)
            status = view.get("status") or "unknown"
            started = databricks_run_ids(view)
            claimed.update(started)
            if not started:
                rows.append((self.point, run_id, status, "yes" if hit else "no", "-", NEVER_STARTED))
            for dbx_id in started:
                state = dbx_state(self.dbx[dbx_id]) if dbx_id in self.dbx else "not listed"
                rows.append((self.point, run_id, status, "yes" if hit else "no", str(dbx_id), state))
        for dbx_id in sorted(set(self.dbx) - self.before - claimed):
            rows.append((self.point, "-", "", "", str(dbx_id), dbx_state(self.dbx[dbx_id])))
        return rows


def step(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in view.get("steps") or [] if s.get("name") == name), None)


def at(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def databricks_run_ids(view: dict[str, Any]) -> list[int]:
    """The Databricks runs a run reports it started."""
    return [r["run_id"] for r in view.get("databricks_runs") or [] if r.get("run_id") is not None]


def started_at(run: dict[str, Any]) -> float | None:
    """When a Databricks run started (epoch seconds); None if it never did (no, or a 0, ``start_time``)."""
    start = run.get("start_time")
    return start / 1000 if isinstance(start, int | float) and start > 0 else None


def result_state(run: dict[str, Any]) -> str | None:
    """SUCCESS, FAILED, ...: ``state.result_state``, else API 2.2's ``status.termination_details.code``."""
    state = run.get("state") or {}
    details = (run.get("status") or {}).get("termination_details") or {}
    return state.get("result_state") or details.get("code")


def dbx_state(run: dict[str, Any]) -> str:
    """A Databricks run's life-cycle and result state, e.g. ``TERMINATED SUCCESS``, or ``never started``."""
    life_cycle = (run.get("state") or {}).get("life_cycle_state") or (run.get("status") or {}).get("state")
    known = " ".join(s for s in (life_cycle, result_state(run)) if s)
    if started_at(run) is None:
        return f"{NEVER_STARTED} ({known})" if known else NEVER_STARTED
    return known or "no state"


def completed(view: dict[str, Any]) -> bool:
    return view.get("status") == "done" and view.get("result") == EXPECTED


def lost_callback(view: dict[str, Any], dbx: dict[int, dict[str, Any]]) -> bool:
    """The Databricks run succeeded (so DARA accepted the callback) but the callback step is not resolved."""
    callback = step(view, "callback")
    succeeded = [r for r in databricks_run_ids(view) if r in dbx and result_state(dbx[r]) == "SUCCESS"]
    return bool(succeeded) and (callback is None or callback.get("state") != "resolved")


def was_at_point(point: str, view: dict[str, Any], dbx: dict[int, dict[str, Any]], killed_at: float) -> bool:
    """Judge from timestamps where the run was when the kill landed (unknown times judge "no")."""
    job = step(view, "run_job")
    callback = step(view, "callback")
    started = [t for r in databricks_run_ids(view) if r in dbx and (t := started_at(dbx[r])) is not None]
    recorded = at(job.get("finished_at")) if job else None
    settled = at(callback.get("finished_at")) if callback else None
    finished = at(view.get("finished_at"))
    if point == "before_start":
        return bool(started) and min(started) > killed_at
    if point == "accepted_not_recorded":
        return bool(started) and min(started) < killed_at and recorded is not None and recorded > killed_at
    if point == "suspended":
        return recorded is not None and recorded < killed_at and settled is not None and settled > killed_at
    return settled is not None and settled < killed_at and finished is not None and finished > killed_at


def wait_for(dara: Dara, run_id: str, timeout: float) -> dict[str, Any]:
    """The run once it finished (or the time is up); a 404 means the backend lost it.

    Other failures to read it are retried until the time is up, then reported as the
    run's status ``unknown``: one unreadable run is a row, not the end of the script.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            view = dara("GET", f"/runs/{run_id}?wait=30")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {"id": run_id, "status": "lost", "error": "404: the backend has no such run"}
            failure = f"GET /runs/{run_id} answered {error.code}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            failure = f"GET /runs/{run_id} failed: {error}"
        else:
            if view.get("status") in FINISHED or time.monotonic() > deadline:
                return view
            continue
        if time.monotonic() > deadline:
            return {"id": run_id, "status": "unknown", "error": failure}
        time.sleep(1)


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
            if point == "suspended" and all(v.get("status") == "waiting" for v in views):
                return
            if point == "callback_arrived" and any(
                (s := step(v, "callback")) is not None and s.get("state") != "pending" for v in views
            ):
                return
        time.sleep(0.005)
    print(f"  {point}: not observed within 120s; killing anyway", file=sys.stderr)


def run_point(outcome: Outcome, service: Service, args: argparse.Namespace) -> Outcome:
    """Run ``outcome.point``, recording into ``outcome`` as it goes (see :class:`Outcome`)."""
    point = outcome.point
    workspace = service.start()
    dara = service.dara
    job_id = workspace.job_id(args.job)
    outcome.before = set(workspace.runs(job_id))
    stamp = uuid.uuid4().hex[:6]
    params = {"job": args.job, "params": {"name": NAME, "count": str(COUNT)}}
    for n in range(args.runs):
        run_id = f"chaos-{point.replace('_', '-')}-{stamp}-{n}"
        dara("POST", "/runs", {"pipeline": "notebook_job", "id": run_id, "params": params})
        outcome.ids.append(run_id)
    trigger(point, dara, workspace, job_id, outcome.ids, outcome.before)
    outcome.killed_at = service.kill()
    when = datetime.fromtimestamp(outcome.killed_at).time()
    print(f"  {point}: killed at {when}; down for {args.down}s", file=sys.stderr)
    time.sleep(args.down)
    workspace = service.start()
    deadline = time.monotonic() + args.timeout
    for run_id in outcome.ids:
        outcome.views[run_id] = wait_for(dara, run_id, max(1.0, deadline - time.monotonic()))
    outcome.dbx = workspace.runs(job_id)
    service.stop()
    return outcome


def layout(head: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, a rule under the head."""
    rows = [head, *body]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def runs_table(outcomes: list[Outcome]) -> str:
    """A row per run and Databricks run it started (see :meth:`Outcome.rows`)."""
    head = ("point", "run", "status", "at point", "databricks run", "databricks state")
    return layout(head, [row for o in outcomes for row in o.rows()])


def report(outcomes: list[Outcome]) -> str:
    """Both tables, then a note per run that did not complete and per point that broke off."""
    parts = [table(outcomes), "", runs_table(outcomes)]
    notes = [f"{o.point}: {note}" for o in outcomes for note in (*o.failures(), *o.notes)]
    return "\n".join(parts + ([""] + notes if notes else []))


def table(outcomes: list[Outcome]) -> str:
    head = ("point", "runs", "at point", "completed", "databricks runs", "lost callbacks")
    return layout(
        head,
        [
            (o.point, str(o.runs), str(o.at_point), str(o.completed), str(o.databricks_runs), str(o.lost_callbacks))
            for o in outcomes
        ],
    )


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
        "--state-dir",
        type=Path,
        default=PROJECT_ROOT / ".dara" / "chaos",
        help="DARA_STATE_DIR for the service (default: .dara/chaos)",
    )
    args = parser.parse_args(argv)
    if not (args.resonate_url or args.postgres_dsn):
        parser.error(
            "a durable backend is required: pass --resonate-url URL (e.g. http://localhost:8001 after "
            "`docker compose up -d resonate`) or --postgres-dsn DSN. Without one the service runs on the "
            "in-process default, which keeps its runs in the memory this script kills: every run would "
            "be lost, and the table would measure nothing else."
        )
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = args.state_dir / f"logs-{datetime.now():%Y%m%d-%H%M%S}"
    log_dir.mkdir(exist_ok=True)
    service = Service(service_env(args), args.port, log_dir)
    if service.dara.up():
        sys.exit(f"something already answers on port {args.port}; pick another with --port")
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        for point in args.points:
            print(f"{point}: {args.runs} runs", file=sys.stderr)
            outcome = Outcome(point)
            outcomes.append(outcome)
            try:
                run_point(outcome, service, args)
            except Exception as error:  # noqa: BLE001 -- a broken point is a row with a note
                outcome.notes.append(f"broke off: {type(error).__name__}: {error}")
                service.stop()
                if isinstance(error, Fatal):
                    break
    except KeyboardInterrupt:
        interrupted = True
        if outcomes:
            outcomes[-1].notes.append("interrupted (Ctrl-C): the rows show what was seen so far")
    finally:
        # Print before stopping the service: a second Ctrl-C while it stops loses nothing.
        print(report(outcomes))
        print(f"service logs: {log_dir}")
        sys.stdout.flush()
        service.stop()
    if interrupted:
        return 130
    clean = len(outcomes) == len(args.points) and all(
        o.runs == args.runs
        and o.completed == o.runs
        and o.databricks_runs == o.runs
        and o.lost_callbacks == 0
        and not o.notes
        for o in outcomes
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
