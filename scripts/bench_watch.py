#!/usr/bin/env python3
"""Count the Databricks API calls DARA's run watchers make while runs wait.

    .venv/bin/python scripts/bench_watch.py                      # N = 10, 100, 1000, 10000
    .venv/bin/python scripts/bench_watch.py --n 1000 --minutes 3
    .venv/bin/python scripts/bench_watch.py --n 100 --interval 10 # another DARA_WATCH_INTERVAL
    .venv/bin/python scripts/bench_watch.py --run-events         # Databricks' job notifications on

For each N, the DARA runtime (in-process Resonate, as on embedded defaults) runs against
the Databricks HTTP double (scripts/databricks_double.py) serving a jobs service
(scripts/jobs_service_double.py): runs/list pages at most 25 runs, as the Jobs API does.
N ``notebook_job`` runs are started and left waiting for callbacks that never come.
Once every run has been watched for an interval, every call to the double is counted
from the end of one listing of the active runs to the end of a later one, over about
``--minutes`` (whole intervals, so the count does not depend on where the window
falls), and divided by the time between them. Then one run's job dies without
calling back (the double ends it FAILED), and the time until its DARA run has failed
is measured: the goal is at most 10 calls a minute and a dead run noticed within two
minutes, whatever N.

With ``--run-events`` the service runs on its uvicorn configuration, with
DARA_RUN_EVENTS_USER and DARA_RUN_EVENTS_PASSWORD set, and the double sends Databricks'
job notification (``POST /api/databricks/run-events``) when a run ends. The listing of
active runs is then a backstop paced to DARA_WATCH_CALLS_PER_MINUTE, and a whole
listing of N runs may take longer than ``--minutes``: calls are counted over
``--minutes`` of wall-clock time instead, after the same warm-up.

The run watchers really sleep for the interval, so each N takes ``--minutes`` plus
about two intervals (and the start of N runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:
    import resonate  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the script was started
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.executable).resolve() != venv_python.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    raise
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Imported after the venv re-exec above.
from collections.abc import AsyncIterator

import uvicorn

from app.active_runs import ActiveRuns
from app.durable import ANONYMOUS
from app.main import create_app
from app.runtime import Runtime
from app.server import uvicorn_config
from app.settings import Settings
from scripts.databricks_double import DatabricksDouble
from scripts.jobs_service_double import GET_RUN, JOB_ID, LIST_RUNS, PAGE_SIZE, JobsService

DEFAULT_SIZES = (10, 100, 1000, 10_000)
#: Runs started at once; more only queue in the thread pool that runs steps.
START_CONCURRENCY = 64
#: The notification destination's credentials, with ``--run-events``.
EVENTS_USER, EVENTS_PASSWORD = "databricks", "bench-watch-run-events-0123456789"
EVENTS_ROUTE = "/api/databricks/run-events"


@contextlib.asynccontextmanager
async def runtime_only(settings: Settings) -> AsyncIterator[Runtime]:
    """The runtime without HTTP: nothing calls the service but the watchers' own looks."""
    runtime = await Runtime.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Runtime]:
    """The service on its uvicorn configuration in this event loop, where run events reach it."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            raise RuntimeError("the service failed to start; see the log above")
        await asyncio.sleep(0.05)
    try:
        yield app.state.runtime
    finally:
        server.should_exit = True
        await serving


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def measure(n: int, interval: float | None, minutes: float, run_events: bool = False) -> dict[str, float]:
    os.environ["DATABRICKS_TOKEN"] = "bench"
    with DatabricksDouble() as double, tempfile.TemporaryDirectory() as state:
        jobs = JobsService(double)
        overrides: dict[str, object] = {"watch_interval": interval} if interval else {}
        if run_events:
            overrides |= {"run_events_user": EVENTS_USER, "run_events_password": EVENTS_PASSWORD, "port": free_port()}
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            state_dir=Path(state),
            databricks_host=double.url,
            deploy_on_start=False,
            callback_secret="bench-watch-callback-secret-0123456789",
            resonate_url=None,
            postgres_dsn=None,
            notify_webhook_url=None,
            **overrides,
        )
        async with served(settings) if run_events else runtime_only(settings) as runtime:
            if run_events:
                jobs.send_run_events(f"http://127.0.0.1:{settings.port}{EVENTS_ROUTE}", EVENTS_USER, EVENTS_PASSWORD)
            interval = settings.watch_interval.total_seconds()
            pipeline = runtime.pipelines["notebook_job"]
            params = pipeline.validate({"job": str(JOB_ID)})
            started = time.monotonic()
            gate = asyncio.Semaphore(START_CONCURRENCY)

            async def start(i: int) -> None:
                async with gate:
                    await runtime.start_run(f"wait-{i}", pipeline, params, started_by=ANONYMOUS)

            await asyncio.gather(*(start(i) for i in range(n)))
            while len(jobs.active()) < n:
                await asyncio.sleep(0.2)
            print(f"  N={n}: {n} runs waiting after {time.monotonic() - started:.0f} s", flush=True)
            # Every watcher has had its first look (which costs nothing) and slept an
            # interval; one more interval and the listing shows every run.
            await asyncio.sleep(2 * interval + 2)

            active = runtime.active_runs
            if not run_events:
                listings = await next_listing(active, active.listings)
            began = time.monotonic()
            calls, listed, read, looks = jobs.calls(), jobs.calls(LIST_RUNS), jobs.calls(GET_RUN), active.lookups
            if run_events:  # a listing may take longer than the window: count over the window
                await asyncio.sleep(minutes * 60)
            else:
                await next_listing(active, listings + max(1, round(minutes * 60 / interval)) - 1)
            elapsed = (time.monotonic() - began) / 60
            per_minute = (jobs.calls() - calls) / elapsed
            lists = (jobs.calls(LIST_RUNS) - listed) / elapsed
            gets = (jobs.calls(GET_RUN) - read) / elapsed
            looks_per_minute = (active.lookups - looks) / elapsed

            # wait-0's job dies: its run_job step (wait-0:2) says which Databricks run it is.
            dead = (await runtime.resonate.promises.get("wait-0:2")).value.data["result"]["run_id"]
            jobs.end(dead, "FAILED", message="Cluster lost")
            died = time.monotonic()
            while (await runtime.resonate.promises.get("wait-0")).state == "pending":
                await asyncio.sleep(0.1)
            detected = time.monotonic() - died
            return {
                "n": n,
                "run_events": run_events,
                "interval": interval,
                "calls_per_minute": per_minute,
                "list_per_minute": lists,
                "get_per_minute": gets,
                "looks_per_minute": looks_per_minute,
                "pages": math.ceil(n / PAGE_SIZE),
                "detected_s": detected,
                # With run events, how long one whole listing takes at the budget.
                "listing_minutes": math.ceil(n / PAGE_SIZE) / settings.watch_calls_per_minute if run_events else 0,
            }


async def next_listing(active: ActiveRuns, after: int) -> int:
    """Once the listing after the ``after``-th has ended, how many there have been."""
    while active.listings <= after:
        await asyncio.sleep(0.05)
    return active.listings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--n", type=int, action="append", help="waiting runs (repeat for several; default 10, 100, 1000, 10000)"
    )
    parser.add_argument(
        "--interval", type=float, help="DARA_WATCH_INTERVAL in seconds (default: the setting's default)"
    )
    parser.add_argument("--minutes", type=float, default=2.0, help="how long calls are counted (default %(default)s)")
    parser.add_argument(
        "--run-events", action="store_true", help="Databricks' job notifications on: the listing is a paced backstop"
    )
    args = parser.parse_args()
    rows = []
    for n in args.n or DEFAULT_SIZES:
        rows.append(asyncio.run(measure(n, args.interval, args.minutes, args.run_events)))
        print(f"  N={n}: {rows[-1]}", flush=True)
    print()
    print(
        "| waiting runs | run events | Databricks calls / min (runs/list, runs/get) | looks / min "
        "| dead run failed after | watch interval | one whole listing |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        listing = f"{row['listing_minutes']:.1f} min" if row["run_events"] else "an interval"
        print(
            f"| {row['n']:,} | {'on' if row['run_events'] else 'off'} "
            f"| {row['calls_per_minute']:.1f} ({row['list_per_minute']:.1f}, {row['get_per_minute']:.1f}) "
            f"| {row['looks_per_minute']:,.0f} | {row['detected_s']:.0f} s | {row['interval']:.0f} s | {listing} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
