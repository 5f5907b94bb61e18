#!/usr/bin/env python3
"""Benchmark DARA against the bare Resonate SDK on the same durable workload.

    .venv/bin/python scripts/bench.py                 # N = 100, 1000, 5000 (the SDK side takes ~3 min at 5000)
    .venv/bin/python scripts/bench.py --n 1000        # one size (about 15 s)
    .venv/bin/python scripts/bench.py --n 1000 --repeat 5   # medians of 5 rounds, sides alternating
    .venv/bin/python scripts/bench.py --n 1000 --count-requests --idle 75
    .venv/bin/python scripts/bench.py --n 1000 --resonate-url http://127.0.0.1:8001
    .venv/bin/python scripts/bench.py --n 1000 --profile pyinstrument --profile-dir /tmp/prof

Install the extras first: ``pip install -e '.[bench]'`` (tqdm for the progress bar,
pyinstrument for ``--profile pyinstrument``; neither is required).

The workload is N runs of one workflow shaped ``step -> promise -> step`` whose
steps do nothing (no Databricks). Both sides run it the same way:

* **sdk**: the bare Resonate SDK in its own process. A plain ``async def``
  workflow with ``ctx.run`` / ``ctx.promise`` / ``ctx.run``, started with
  ``resonate.run`` and resolved with ``resonate.promises.resolve``. No HTTP,
  no framework.
* **dara**: the DARA service in its own process (uvicorn, embedded defaults,
  ``deploy_on_start`` off) with a ``@pipeline`` generator of the same shape,
  handed to the service beside its own pipelines. Runs are started with
  ``POST /runs`` and resolved with ``POST /resolve`` (HMAC token) from this
  process over keep-alive HTTP/1.1 connections, ``--concurrency`` requests in
  flight. DARA runs on its own in-process server (app.durable.in_process), which
  also times waits out, so no per-wait watchdog runs; the SDK runs on its own
  ``LocalConnection`` unless ``--sdk-on-dara-server``.

Each side runs in a fresh process so its memory peak is its own. This process is
DARA's HTTP client and draws the progress bar. The suspension/completion checks and
the clock stamps run inside the measured process (for DARA, a ``/_bench`` router
this script adds to the app), reading the Resonate promises and tasks directly, so
nobody polls ``GET /runs/{id}`` N times. With ``--resonate-url`` / ``--postgres-dsn``
both sides also run against that backend (use a scratch one: the runs stay there).

What each figure means is printed under the tables; see also docs/PERFORMANCE.md.
"""

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.durable import Pipeline
    from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

# The project's venv has the dependencies; re-run under it when started with another
# interpreter (e.g. `python3 scripts/bench.py`).
try:
    import resonate  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the script was started
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.executable).resolve() != venv_python.resolve():
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    raise

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.callback_tokens import CallbackSigner  # after the venv re-exec above

PIPELINE = "bench_step_promise_step"
DEFAULT_SIZES = (100, 1000, 5000)
DEFAULT_CONCURRENCY = 32
WARMUP_RUNS = 4
RUN_DEADLINE = timedelta(hours=24)  # DARA_RUN_DEADLINE's default; the SDK side uses the same
#: Seconds between checks of the promises while waiting, in the measured process.
LOCAL_POLL = 0.002
REMOTE_POLL = 0.1
PHASE_TIMEOUT = 900.0
#: The DARA service's DARA_CALLBACK_SECRET here; the client signs its callbacks with it.
CALLBACK_SECRET = "dara-bench-callback-secret-0123456789"

#: Step 2 writes the monotonic clock here when its body runs: "the run has resumed".
#: CLOCK_MONOTONIC is system-wide on Linux, so the DARA server's stamps compare with
#: this process's send times.
STAMPS: dict[str, int] = {}
#: Requests the in-process Resonate server applied, by kind (``--count-requests``).
REQUESTS: dict[str, int] = {}


# =====================================================================================
# Measured-process helpers (both sides)
# =====================================================================================


def process_stats() -> dict[str, float]:
    """RSS now and its peak (KiB, from /proc/self/status), and CPU seconds so far."""
    stats: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    stats[key] = float(value.split()[0])
    except OSError:  # not Linux: ru_maxrss is the peak (KiB on Linux, bytes on macOS)
        stats["VmHWM"] = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        stats["VmRSS"] = stats["VmHWM"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu"] = usage.ru_utime + usage.ru_stime
    stats.update({f"req:{kind}": count for kind, count in REQUESTS.items()})
    return stats


def count_requests() -> None:
    """Count every request the in-process Resonate server applies, by kind."""
    from app.durable.in_process import count_applied_requests  # the SDK's private server: the adapter's

    count_applied_requests(REQUESTS)


def collect() -> dict[str, float]:
    """Garbage-collect, then :func:`process_stats`; for the memory checkpoints."""
    gc.collect()
    return process_stats()


class Probe:
    """Which runs are suspended or complete, read from the Resonate backend.

    In-process backend: the server's own task and promise tables (a run is
    *suspended* when its root task is, *complete* when its root promise settled).
    A remote backend: ``promises.get`` -- suspended once the callback promise
    ``<id>:2`` exists (step 1 settled before it was created), complete once the root
    promise is settled.
    """

    def __init__(self, resonate: Any, local: Any) -> None:
        self.resonate = resonate
        self.local = local
        self.interval = LOCAL_POLL if local is not None else REMOTE_POLL

    async def satisfied(self, ids: list[str], what: str) -> set[str]:
        if self.local is not None:
            state = self.local.state
            if what == "suspended":
                return {i for i in ids if (t := state.tasks.get(i)) is not None and t.state == "suspended"}
            return {i for i in ids if (p := state.promises.get(i)) is not None and p.state != "pending"}
        from resonate.error import ServerError

        done: set[str] = set()
        for run_id in ids:
            try:
                if what == "suspended":
                    await self.resonate.promises.get(f"{run_id}:2")
                    done.add(run_id)
                elif (await self.resonate.promises.get(run_id)).state != "pending":
                    done.add(run_id)
            except ServerError as exc:
                if exc.code != 404:
                    raise
        return done

    async def wait(self, ids: list[str], what: str, timeout: float) -> list[str]:
        """Wait until every run in ``ids`` is ``what`` or ``timeout`` passed; those still not."""
        pending = list(ids)
        deadline = time.monotonic() + timeout
        while True:
            done = await self.satisfied(pending, what)
            pending = [i for i in pending if i not in done]
            if not pending or time.monotonic() >= deadline:
                return pending
            await asyncio.sleep(self.interval)


class Profiling:
    """cProfile or pyinstrument around the measured phases, inside the measured process."""

    def __init__(self, kind: str | None, path: str | None) -> None:
        self.kind, self.path, self._profiler = kind, path, None

    def __call__(self, action: str) -> None:
        if action == "start":
            self.start()
        else:
            self.stop()

    def start(self) -> None:
        if self.kind == "cprofile":
            import cProfile

            self._profiler = cProfile.Profile()
            self._profiler.enable()
        elif self.kind == "pyinstrument":
            from pyinstrument import Profiler

            self._profiler = Profiler(interval=0.0005, async_mode="disabled")
            self._profiler.start()

    def stop(self) -> None:
        profiler, self._profiler = self._profiler, None
        if profiler is None or self.path is None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "cprofile":
            profiler.disable()
            profiler.dump_stats(self.path + ".pstats")
            import pstats

            with open(self.path + ".txt", "w") as out:
                stats = pstats.Stats(self.path + ".pstats", stream=out)
                stats.sort_stats("cumulative").print_stats(60)
                stats.sort_stats("tottime").print_stats(40)
        else:
            profiler.stop()
            profiler.last_session.save(self.path + ".pyisession")  # re-render: pyinstrument --load
            with open(self.path + ".txt", "w") as out:
                out.write(profiler.output_text(unicode=False, color=False, show_all=False))
            with open(self.path + ".html", "w") as out:
                out.write(profiler.output_html())


# =====================================================================================
# The workload, measured the same way on both sides
# =====================================================================================


class Driver:
    """What :func:`measure` needs from a side. Waiting and stamps run in the measured process."""

    async def start(self, run_id: str) -> None: ...
    async def resolve(self, run_id: str, value: Any) -> None: ...
    async def wait(self, ids: list[str], what: str, timeout: float) -> list[str]: ...
    async def stats(self, gc_first: bool) -> dict[str, float]: ...
    async def stamps(self) -> dict[str, int]: ...
    async def profile(self, action: str) -> None: ...


Progress = Callable[[str, int, int], None]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def pool(
    ids: list[str], call: Callable[[str], Awaitable[None]], concurrency: int, on_done: Callable[[int], None]
) -> tuple[dict[str, int], dict[str, int]]:
    """Run ``call(id)`` for every id, ``concurrency`` at a time; (sent_ns, answered_ns) by id."""
    sent: dict[str, int] = {}
    answered: dict[str, int] = {}
    queue = iter(ids)

    async def worker() -> None:
        for run_id in queue:
            sent[run_id] = time.monotonic_ns()
            await call(run_id)
            answered[run_id] = time.monotonic_ns()
            on_done(len(answered))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(ids)))))
    return sent, answered


async def wait_all(driver: Driver, ids: list[str], what: str, progress: Progress, phase: str) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT
    pending = list(ids)
    while pending:
        pending = await driver.wait(pending, what, 0.25)
        progress(phase, len(ids) - len(pending), len(ids))
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(ids)} runs not {what} after {PHASE_TIMEOUT}s")


async def measure(driver: Driver, n: int, concurrency: int, progress: Progress, idle: float = 0) -> dict[str, Any]:
    tag = "b" + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))

    # Warm-up: a few full cycles, so imports, caches and pools are in place.
    progress("warm-up", 0, WARMUP_RUNS)
    warm = [f"{tag}w-{i}" for i in range(WARMUP_RUNS)]
    for run_id in warm:
        await driver.start(run_id)
        if await driver.wait([run_id], "suspended", 60):
            raise RuntimeError(f"warm-up run {run_id} did not suspend")
        await driver.resolve(run_id, {"warm": True})
        if await driver.wait([run_id], "completed", 60):
            raise RuntimeError(f"warm-up run {run_id} did not complete")
    progress("warm-up", WARMUP_RUNS, WARMUP_RUNS)

    ids = [f"{tag}-{i:06d}" for i in range(n)]
    singles = ids[: min(10, max(1, n // 10))]
    burst = ids[len(singles) :]

    before = await driver.stats(gc_first=True)
    await driver.profile("start")

    # 1. Start N runs, `concurrency` at a time; then wait until all are suspended.
    start_sent, start_done = await pool(ids, driver.start, concurrency, lambda k: progress("start", k, n))
    t0 = min(start_sent.values())
    t_started = max(start_done.values())
    await wait_all(driver, ids, "suspended", progress, "suspend")
    t_suspended = time.monotonic_ns()
    after_start = await driver.stats(gc_first=False)
    suspended = await driver.stats(gc_first=True)
    idle_before = idle_after = suspended
    if idle > 0:  # N runs suspended, nothing happening: what do they cost meanwhile?
        for second in range(int(idle)):
            progress("idle", second, int(idle))
            await asyncio.sleep(1)
        idle_after = await driver.stats(gc_first=False)

    # 2. Resolve a few runs one at a time, each alone.
    single_sent: dict[str, int] = {}
    for k, run_id in enumerate(singles):
        single_sent[run_id] = time.monotonic_ns()
        await driver.resolve(run_id, {"i": k})
        if await driver.wait([run_id], "completed", 60):
            raise RuntimeError(f"run {run_id} did not complete")
        progress("single", k + 1, len(singles))

    # 3. Resolve the rest at once (bounded concurrency); wait until all complete.
    before_burst = await driver.stats(gc_first=False)
    burst_sent, burst_done = await pool(
        burst, lambda rid: driver.resolve(rid, {"i": rid}), concurrency, lambda k: progress("resolve", k, len(burst))
    )
    await wait_all(driver, burst, "completed", progress, "complete")
    t_completed = time.monotonic_ns()
    after_burst = await driver.stats(gc_first=False)
    await driver.profile("stop")
    end = await driver.stats(gc_first=True)
    stamps = await driver.stamps()

    def requests(a: dict[str, float], b: dict[str, float], runs: int) -> dict[str, float]:
        kinds = {k for k in b if k.startswith("req:")}
        return {k[4:]: (b[k] - a.get(k, 0)) / runs for k in sorted(kinds) if b[k] - a.get(k, 0)}

    missing = [i for i in ids if i not in stamps]
    if missing:
        raise RuntimeError(f"{len(missing)} runs completed without stamping step 2, e.g. {missing[:3]}")
    ms = 1e-6
    b0 = min(burst_sent.values()) if burst else t_completed
    return {
        "n": n,
        "concurrency": concurrency,
        "start_tput": n / ((t_started - t0) * 1e-9),
        "suspend_tput": n / ((t_suspended - t0) * 1e-9),
        "start_p50": percentile([(start_done[i] - start_sent[i]) * ms for i in ids], 0.5),
        "start_p99": percentile([(start_done[i] - start_sent[i]) * ms for i in ids], 0.99),
        "single_n": len(singles),
        "single_p50": percentile([(stamps[i] - single_sent[i]) * ms for i in singles], 0.5),
        "single_p99": percentile([(stamps[i] - single_sent[i]) * ms for i in singles], 0.99),
        "burst_n": len(burst),
        "resolve_tput": len(burst) / ((max(burst_done.values(), default=b0) - b0) * 1e-9 or 1),
        "complete_tput": len(burst) / ((t_completed - b0) * 1e-9),
        "burst_p50": percentile([(stamps[i] - burst_sent[i]) * ms for i in burst], 0.5),
        "burst_p99": percentile([(stamps[i] - burst_sent[i]) * ms for i in burst], 0.99),
        "rss_base_kib": before["VmRSS"],
        "rss_suspended_kib": suspended["VmRSS"],
        "bytes_per_suspended": (suspended["VmRSS"] - before["VmRSS"]) * 1024 / n,
        "peak_kib": end["VmHWM"],
        "peak_growth_kib": end["VmHWM"] - before["VmRSS"],
        "cpu_start_us": (after_start["cpu"] - before["cpu"]) * 1e6 / n,
        "cpu_burst_us": (after_burst["cpu"] - before_burst["cpu"]) * 1e6 / max(len(burst), 1),
        "idle_s": idle,
        "idle_cpu_us": (idle_after["cpu"] - idle_before["cpu"]) * 1e6 / n / (idle / 60) if idle else None,
        "requests_idle": requests(idle_before, idle_after, n) if idle else {},
        "requests_start": requests(before, after_start, n),
        "requests_burst": requests(before_burst, after_burst, max(len(burst), 1)),
    }


# =====================================================================================
# sdk: the bare Resonate SDK, in this process
# =====================================================================================


async def sdk_side(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from resonate.connections import LocalConnection
    from resonate.context import Context
    from resonate.resonate import Resonate
    from resonate.retry import Never
    from resonate.types import Value

    if args.step_kind == "sync":

        def first(ctx: Context, tag: str) -> str:
            return tag

        def second(ctx: Context, run_id: str, value: Any) -> str:
            STAMPS[run_id] = time.monotonic_ns()
            return run_id

    else:

        async def first(ctx: Context, tag: str) -> str:
            return tag

        async def second(ctx: Context, run_id: str, value: Any) -> str:
            STAMPS[run_id] = time.monotonic_ns()
            return run_id

    async def bench_step_promise_step(ctx: Context) -> Any:
        await ctx.run(first, "a")
        value = await ctx.promise()
        await ctx.run(second, ctx.info.origin_id, value)
        return value

    # Wired as app.runtime.build_resonate wires DARA's, minus everything DARA adds.
    pid, group = uuid.uuid4().hex, "bench-sdk"
    local = None
    if args.resonate_url:
        resonate = Resonate(url=args.resonate_url, group=group, pid=pid, retry_policy=Never(), env={})
    elif args.postgres_dsn:
        from resonate_pg import PostgresConnection

        network = PostgresConnection(args.postgres_dsn, pid=pid, group=group)
        resonate = Resonate(network=network, group=group, pid=pid, retry_policy=Never(), env={})
    else:
        if args.sdk_on_dara_server:
            from app.durable.in_process import InProcessServer as LocalConnection
        local = LocalConnection(pid=pid, group=group)
        resonate = Resonate(network=local, group=group, pid=pid, retry_policy=Never(), env={})
    resonate.register(bench_step_promise_step, name=PIPELINE)
    probe = Probe(resonate, local)
    profiling = Profiling(args.profile, args.profile_path)
    starter = resonate.options(timeout=RUN_DEADLINE)

    class SdkDriver(Driver):
        async def start(self, run_id: str) -> None:
            await starter.run(run_id, bench_step_promise_step).id()

        async def resolve(self, run_id: str, value: Any) -> None:
            await resonate.promises.resolve(f"{run_id}:2", Value(data=value))

        async def wait(self, ids: list[str], what: str, timeout: float) -> list[str]:
            return await probe.wait(ids, what, timeout)

        async def stats(self, gc_first: bool) -> dict[str, float]:
            return collect() if gc_first else process_stats()

        async def stamps(self) -> dict[str, int]:
            return dict(STAMPS)

        async def profile(self, action: str) -> None:
            profiling(action)

    try:
        return await measure(SdkDriver(), args.n[0], args.concurrency, progress, args.idle)
    finally:
        await resonate.stop()


# =====================================================================================
# dara: the service, in its own process, with a /_bench router
# =====================================================================================


def define_dara_pipeline(step_kind: str) -> "Pipeline":
    """The same workflow as a DARA ``@pipeline``, for the service to run."""
    from app.durable import Context, pipeline

    if step_kind == "sync":  # what DARA steps are: plain functions, run in a worker thread

        def bench_first(tag: str) -> str:
            return tag

        def bench_second(run_id: str, value: Any) -> str:
            STAMPS[run_id] = time.monotonic_ns()
            return run_id

    else:

        async def bench_first(tag: str) -> str:
            return tag

        async def bench_second(run_id: str, value: Any) -> str:
            STAMPS[run_id] = time.monotonic_ns()
            return run_id

    @pipeline(name=PIPELINE)
    def bench_step_promise_step(ctx: Context) -> Generator[Any, Any, Any]:
        """Benchmark workload: a no-op step, a callback promise, a no-op step."""
        yield ctx.run(bench_first, "a")
        value = yield ctx.promise()
        yield ctx.run(bench_second, ctx.run_id, value)
        return value

    return bench_step_promise_step


def bench_settings(state_dir: Path, **overrides: Any) -> "Settings":
    """The service's settings for a benchmark: embedded defaults, whatever an ``.env`` file
    or the environment says about backends and Databricks left out, then ``overrides``."""
    from app.settings import Settings

    values: dict[str, Any] = {
        "state_dir": state_dir,
        "resonate_url": None,
        "postgres_dsn": None,
        "databricks_host": None,
        "databricks_profile": None,
        "notify_webhook_url": None,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def dara_server(args: argparse.Namespace) -> None:
    """Serve DARA on a free loopback port; print one JSON line with its URL when ready."""
    import socket

    import uvicorn
    from fastapi import APIRouter, Request
    from pydantic import BaseModel

    from app.main import create_app
    from pipelines import PIPELINES

    overrides: dict[str, Any] = {"deploy_on_start": False, "callback_secret": CALLBACK_SECRET}
    if args.resonate_url:
        overrides["resonate_url"] = args.resonate_url
    if args.postgres_dsn:
        overrides["postgres_dsn"] = args.postgres_dsn
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = bench_settings(Path(args.state_dir), **overrides).model_copy(update={"port": port, "public_url": url})
    app = create_app(settings, pipelines_to_run=(*PIPELINES, define_dara_pipeline(args.step_kind)))
    profiling = Profiling(args.profile, args.profile_path)
    probes: dict[int, Probe] = {}

    def probe(request: Request) -> Probe:
        runtime = request.app.state.runtime
        return probes.setdefault(id(runtime), Probe(runtime.resonate, runtime.local_server))

    class Ids(BaseModel):
        ids: list[str]
        what: str
        timeout: float

    bench = APIRouter(prefix="/_bench", include_in_schema=False)

    @bench.post("/wait")
    async def wait(body: Ids, request: Request) -> dict[str, list[str]]:
        return {"pending": await probe(request).wait(body.ids, body.what, body.timeout)}

    @bench.post("/stats")
    async def stats(gc_first: bool = False) -> dict[str, float]:
        return collect() if gc_first else process_stats()

    @bench.get("/stamps")
    async def stamps() -> dict[str, int]:
        return dict(STAMPS)

    @bench.post("/profile/{action}")
    async def profile(action: str) -> dict[str, str]:
        profiling(action)
        return {"profile": action}

    app.include_router(bench)
    # As tests/harness.py runs it: no per-request access log lines.
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            loop="auto" if args.loop == "shipped" else args.loop,
            http=args.http,
        )
    )

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.01)
        print(json.dumps({"ready": url, "pid": os.getpid()}), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[listener])


class Http:
    """A minimal HTTP/1.1 keep-alive client for the load: ``size`` connections, JSON in and out.

    httpx (as the tests use) spends 2-5 ms of CPU per request in this setting, mostly in
    httpcore's pool bookkeeping; on 2 cores that made the client, not DARA, the limit.
    This sends each request as one write and reads a Content-Length body back (what
    uvicorn/Starlette send for JSON), a few tens of microseconds per request.
    """

    #: uvicorn closes a keep-alive connection idle for 5 s (timeout_keep_alive).
    MAX_IDLE = 2.0

    def __init__(self, url: str, size: int) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.size = host, int(port), size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = asyncio.Queue()
        self._open: set[asyncio.StreamWriter] = set()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """(reader, writer, reused): an idle connection if a fresh enough one is there."""
        while not self._idle.empty() or len(self._open) >= self.size:
            reader, writer, since = await self._idle.get()
            if time.monotonic() - since < self.MAX_IDLE and not reader.at_eof():
                return reader, writer, True
            self._discard(writer)
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.add(writer)
        return reader, writer, False

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._open.discard(writer)

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        )
        while True:
            reader, writer, reused = await self._connection()
            try:
                writer.write(head.encode() + payload)
                response = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self._discard(writer)
                if reused:  # the server had closed it before reading: nothing was sent
                    continue
                raise
            break
        lines = response.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in headers:
            self._discard(writer)
            raise RuntimeError(f"{method} {path}: no content-length in the answer ({headers})")
        data = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self._discard(writer)
        else:
            self._idle.put_nowait((reader, writer, time.monotonic()))
        return status, json.loads(data) if data else None

    async def close(self) -> None:
        for writer in list(self._open):
            self._discard(writer)


class DaraDriver(Driver):
    """The DARA service over HTTP, as a client would use it (this process is the client)."""

    def __init__(self, http: Http, secret: str) -> None:
        self.http = http
        self.signer = CallbackSigner(secret, "http://unused")
        #: Each run's incarnation, from its start's answer: callback tokens are bound to it.
        self.incarnations: dict[str, str] = {}

    async def _call(self, method: str, path: str, body: Any = None, ok: int = 200) -> Any:
        status, answer = await self.http.request(method, path, body)
        if status != ok:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer

    async def start(self, run_id: str) -> None:
        run = await self._call("POST", "/runs", {"pipeline": PIPELINE, "id": run_id, "params": {}}, ok=201)
        self.incarnations[run_id] = run["incarnation"]

    async def resolve(self, run_id: str, value: Any) -> None:
        promise_id = f"{run_id}:2"
        token = self.signer.token(promise_id, self.incarnations[run_id])
        answer = await self._call("POST", "/resolve", {"id": promise_id, "value": value, "token": token})
        if answer["state"] != "resolved":
            raise RuntimeError(f"POST /resolve {promise_id}: {answer}")

    async def wait(self, ids: list[str], what: str, timeout: float) -> list[str]:
        return (await self._call("POST", "/_bench/wait", {"ids": ids, "what": what, "timeout": timeout}))["pending"]

    async def stats(self, gc_first: bool) -> dict[str, float]:
        return await self._call("POST", f"/_bench/stats?gc_first={'true' if gc_first else 'false'}")

    async def stamps(self) -> dict[str, int]:
        return await self._call("GET", "/_bench/stamps")

    async def profile(self, action: str) -> None:
        await self._call("POST", f"/_bench/profile/{action}")


async def dara_side(args: argparse.Namespace, n: int, backend: dict[str, str], progress: Progress) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dara-bench-") as state_dir:
        command = [*side_command(args, "dara-server", n, backend), "--state-dir", state_dir]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # noqa: ASYNC220 -- starts it, does not wait
        try:
            line = await asyncio.to_thread(server.stdout.readline)
            if not line:
                raise RuntimeError("the DARA service did not start; see its output above")
            http = Http(json.loads(line)["ready"], args.concurrency + 2)
            client_cpu = time.process_time()
            try:
                result = await measure(DaraDriver(http, CALLBACK_SECRET), n, args.concurrency, progress, args.idle)
            finally:
                await http.close()
            result["client_cpu_s"] = time.process_time() - client_cpu
            return result
        finally:
            server.terminate()
            try:
                await asyncio.to_thread(server.wait, 30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


# =====================================================================================
# Orchestration: subprocesses, progress, the table
# =====================================================================================


def side_command(args: argparse.Namespace, role: str, n: int, backend: dict[str, str]) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--n", str(n)]
    command += ["--concurrency", str(args.concurrency), "--step-kind", args.step_kind]
    command += ["--loop", args.loop, "--http", args.http]
    if args.count_requests:
        command.append("--count-requests")
    if args.idle:
        command += ["--idle", str(args.idle)]
    if args.sdk_on_dara_server:
        command.append("--sdk-on-dara-server")
    for key, value in backend.items():
        command += [f"--{key.replace('_', '-')}", value]
    if args.profile:
        name = f"{role.split('-')[0]}-{backend_name(backend)}-n{n}"
        command += ["--profile", args.profile, "--profile-path", str(Path(args.profile_dir) / name)]
    return command


def backend_name(backend: dict[str, str]) -> str:
    if "resonate_url" in backend:
        return "resonate-server"
    if "postgres_dsn" in backend:
        return "postgres"
    return "in-process"


class Bar:
    """tqdm when installed (the bench extra), else a one-line bar on stderr."""

    def __init__(self) -> None:
        self.label, self.phase, self.total = "", "", 0
        try:
            from tqdm import tqdm
        except ImportError:
            self._tqdm = None
        else:
            self._tqdm = tqdm(total=1, file=sys.stderr, dynamic_ncols=True, leave=False)
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase == self.phase and done < total and now - self._last < 0.1:
            return
        self._last = now
        if self._tqdm is not None:
            if phase != self.phase or total != self.total:
                self._tqdm.reset(total=total)
                self._tqdm.set_description(f"{self.label} {phase}")
            self._tqdm.n = done
            self._tqdm.refresh()
        else:
            width = 30
            filled = int(width * done / total) if total else width
            sys.stderr.write(f"\r{self.label} {phase:<8} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}  ")
            sys.stderr.flush()
        self.phase, self.total = phase, total

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


async def sdk_subprocess(
    args: argparse.Namespace, n: int, backend: dict[str, str], progress: Progress
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *side_command(args, "sdk", n, backend), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    result = None
    assert proc.stdout is not None
    async for raw in proc.stdout:
        try:
            message = json.loads(raw)
        except ValueError:
            sys.stderr.write(raw.decode(errors="replace"))
            continue
        if "progress" in message:
            progress(*message["progress"])
        elif "result" in message:
            result = message["result"]
    if await proc.wait() != 0 or result is None:
        raise RuntimeError(f"the sdk side failed (exit {proc.returncode}); see its output above")
    return result


def rows(idle: bool = False) -> list[tuple[str, str, str, str]]:
    """(key, label, unit, better): better is "high" or "low"."""
    extra = [("idle_cpu_us", "CPU per suspended run, idle", "µs/min", "low")] if idle else []
    return [
        ("start_tput", "start: accepted", "runs/s", "high"),
        ("suspend_tput", "start -> all suspended", "runs/s", "high"),
        ("start_p50", "start latency p50", "ms", "low"),
        ("start_p99", "start latency p99", "ms", "low"),
        ("single_p50", "single resolve -> resumed p50", "ms", "low"),
        ("single_p99", "single resolve -> resumed p99", "ms", "low"),
        ("resolve_tput", "burst: resolves accepted", "runs/s", "high"),
        ("complete_tput", "burst: resolve -> all complete", "runs/s", "high"),
        ("burst_p50", "burst resolve -> resumed p50", "ms", "low"),
        ("burst_p99", "burst resolve -> resumed p99", "ms", "low"),
        ("cpu_start_us", "CPU per run, start -> suspended", "µs", "low"),
        ("cpu_burst_us", "CPU per run, resolve -> complete", "µs", "low"),
        ("rss_base_kib", "RSS after warm-up", "MiB", "low"),
        ("bytes_per_suspended", "memory per suspended run", "KiB", "low"),
        ("peak_kib", "peak RSS (VmHWM)", "MiB", "low"),
        ("peak_growth_kib", "peak RSS above warm-up", "MiB", "low"),
    ] + extra


def fmt(key: str, value: float) -> str:
    if key.endswith("_kib"):
        return f"{value / 1024:,.1f}"
    if key == "bytes_per_suspended":
        return f"{value / 1024:,.1f}"
    if key.endswith("_tput") or key.startswith("cpu_"):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def median_result(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Each figure's median over the rounds; counts and the rest from the first round."""
    if not results:
        return None
    merged = dict(results[0])
    for key, value in merged.items():
        if isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in results)
    return merged


def cost(better: str, sdk: float, dara: float) -> float:
    """DARA's cost relative to the SDK: larger is worse for DARA, whichever way the figure runs."""
    if not sdk or not dara:
        return float("nan")
    return sdk / dara if better == "high" else dara / sdk


def table(
    sdk: dict[str, Any], dara: dict[str, Any], goal: float, rounds: dict[str, list[dict[str, Any]]] | None = None
) -> str:
    """The side-by-side table; with ``rounds``, also each round's ratio (round k against round k)."""
    each = " each round (x) |" if rounds else ""
    lines = [
        f"| figure | unit | bare SDK | DARA | DARA cost (x) | <= {goal:.2f}x |{each}",
        "| --- | --- | ---: | ---: | ---: | :---: |" + (" ---: |" if rounds else ""),
    ]
    for key, label, unit, better in rows(bool(sdk.get("idle_s"))):
        a, b = sdk[key], dara[key]
        if key == "rss_base_kib":
            ratio_text, verdict = "", "(fixed cost)"
        elif key == "resolve_tput":  # an HTTP answer against an in-process call: informative only
            ratio_text, verdict = f"{a / b:.2f}", "(transport)"
        else:
            ratio = cost(better, a, b)
            ratio_text = f"{ratio:.2f}"
            verdict = "yes" if ratio <= goal else "NO"
        line = f"| {label} | {unit} | {fmt(key, a)} | {fmt(key, b)} | {ratio_text} | {verdict} |"
        if rounds:
            pairs = zip(rounds["sdk"], rounds["dara"], strict=True)
            line += " " + " ".join(f"{cost(better, s[key], d[key]):.2f}" for s, d in pairs) + " |"
        lines.append(line)
    return "\n".join(lines)


def request_table(sdk: dict[str, Any], dara: dict[str, Any]) -> str:
    """Requests to the in-process Resonate server per run, by kind, in each phase."""
    lines = ["| phase | request | bare SDK | DARA |", "| --- | --- | ---: | ---: |"]
    phases = [("start -> suspended", "requests_start"), ("resolve -> complete", "requests_burst")]
    if sdk.get("idle_s"):
        phases.insert(1, (f"idle, {sdk['idle_s']:.0f} s", "requests_idle"))
    for phase, key in phases:
        kinds = sorted(set(sdk[key]) | set(dara[key]))
        for kind in kinds:
            lines.append(f"| {phase} | {kind} | {sdk[key].get(kind, 0):.2f} | {dara[key].get(kind, 0):.2f} |")
        total_sdk, total_dara = sum(sdk[key].values()), sum(dara[key].values())
        lines.append(f"| {phase} | **all** | {total_sdk:.2f} | {total_dara:.2f} |")
    return "\n".join(lines)


LEGEND = """\
What the figures measure (each side in its own fresh process; times from CLOCK_MONOTONIC):
- start: accepted -- N / (last start answered - first start sent). sdk: resonate.run(...).id()
  returns once the root promise exists; dara: POST /runs answers 201 (root promise exists).
  `concurrency` starts in flight at a time.
- start -> all suspended -- N / (all N root tasks suspended on their callback promise -
  first start sent): the start work including step 1, the promise.
- start latency -- per start call, sent -> answered (dara: the client's HTTP round trip).
- single resolve -> resumed -- one run resolved while nothing else happens (sdk:
  promises.resolve; dara: POST /resolve), until its second step's body runs; the first
  ~10% of runs (at most 10), one after another.
- burst -- the other runs resolved at once, `concurrency` in flight: resolves accepted
  (answers/s; an HTTP round trip against an in-process call, so no goal applies), resolve ->
  all complete (runs/s until every root promise is settled), and per run resolve sent -> its
  second step running (queueing included: a side that accepts resolves faster queues more).
- CPU per run -- user+system CPU of the measured process (all threads) during the phase / runs.
  The dara figure excludes its HTTP client (this process); the sdk side has no client.
- RSS after warm-up -- the process before the N runs (dara includes FastAPI, the embedded
  workspace, databricks-sdk): a fixed cost, not a ratio against the goal.
- memory per suspended run -- (RSS with all N suspended - RSS after warm-up) / N, after
  gc.collect(). With the in-process backend this includes the durable records themselves.
- peak RSS -- VmHWM of the measured process over its whole life; "above warm-up" subtracts
  the RSS after warm-up, i.e. what the N runs added at their peak.
- CPU per suspended run, idle (--idle S only) -- CPU of the measured process while the N runs
  sit suspended for S seconds and nothing else happens, per run per minute."""


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


async def orchestrate(args: argparse.Namespace) -> int:
    backends: list[dict[str, str]] = [{}]
    if args.resonate_url:
        backends.append({"resonate_url": args.resonate_url})
    if args.postgres_dsn:
        backends.append({"postgres_dsn": args.postgres_dsn})
    sizes = args.n or list(DEFAULT_SIZES)
    if max(sizes) > 2000 and not args.sdk_on_dara_server and "sdk" in args.sides:
        sys.stderr.write(
            "note: the SDK's own in-process server costs O(N) per request, so its side takes minutes\n"
            f"      at N={max(sizes)} (~5 min at 5000 on 2 cores); DARA's in-process server is linear.\n"
        )
    results: list[dict[str, Any]] = []
    began = time.monotonic()
    print(f"# DARA vs bare Resonate SDK -- {time.strftime('%Y-%m-%d')}, {machine()}")
    print(f"# command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(
        "# load average before: {:.2f} {:.2f} {:.2f} (other work on this machine skews the timings)".format(
            *os.getloadavg()
        )
    )
    for backend in backends:
        for n in sizes:
            bar = Bar()
            rounds: dict[str, list[dict[str, Any]]] = {"sdk": [], "dara": []}
            try:
                for round_ in range(args.repeat):
                    # Alternate which side goes first, so a slow spell on the machine
                    # does not always land on the same side.
                    order = ["sdk", "dara"] if round_ % 2 == 0 else ["dara", "sdk"]
                    for side in (s for s in order if s in args.sides):
                        bar.label = f"{side:<4} n={n} {backend_name(backend)} {round_ + 1}/{args.repeat}"
                        run_side = sdk_subprocess if side == "sdk" else dara_side
                        rounds[side].append(await run_side(args, n, backend, bar))
            finally:
                bar.close()
            sdk, dara = median_result(rounds["sdk"]), median_result(rounds["dara"])
            results.append({"backend": backend_name(backend), "n": n, "sdk": sdk, "dara": dara, "rounds": rounds})
            if sdk is None or dara is None:
                print(f"\n## {backend_name(backend)} backend, N={n}: {'dara' if sdk is None else 'sdk'} only\n")
                only = sdk or dara
                for key, label, unit, _ in rows(bool(only.get("idle_s"))):
                    print(f"| {label} | {unit} | {fmt(key, only[key])} |")
                continue
            indexed = " (the SDK on DARA's in-process server)" if args.sdk_on_dara_server and not backend else ""
            print(
                f"\n## {backend_name(backend)} backend{indexed}, N={n}, concurrency {args.concurrency}, "
                f"{args.step_kind} steps, {args.loop} loop, uvicorn http={args.http}; "
                f"{sdk['single_n']} single resolves, burst of {sdk['burst_n']}"
                + (f"; median of {args.repeat} rounds per side, sides alternating" if args.repeat > 1 else "")
                + "\n"
            )
            print(table(sdk, dara, args.goal, rounds if args.repeat > 1 else None))
            print(f"\n(dara's HTTP client used {dara['client_cpu_s']:.1f} s CPU in this process)", flush=True)
            if args.count_requests:
                print("\n" + request_table(sdk, dara), flush=True)
    print("\n" + LEGEND)
    print(f"\ntotal bench time {time.monotonic() - began:.0f} s; load average after: %.2f %.2f %.2f" % os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "argv": sys.argv, "results": results}, indent=2))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--n", type=int, action="append", help="runs per size (repeat for several; default 100, 1000, 5000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="starts/resolves in flight (default %(default)s)"
    )
    parser.add_argument("--resonate-url", help="also run both sides against this Resonate server")
    parser.add_argument("--postgres-dsn", help="also run both sides against this Postgres (resonate-pg schema)")
    parser.add_argument(
        "--step-kind",
        choices=("sync", "async"),
        default="sync",
        help="no-op steps as plain functions (DARA: worker thread) or async def",
    )
    parser.add_argument("--sides", default="sdk,dara", help="which sides to run (default %(default)s)")
    parser.add_argument(
        "--loop",
        choices=("shipped", "asyncio", "uvloop"),
        default="shipped",
        help="event loops: 'shipped' (default) runs each side as its users would, DARA on uvicorn's choice (uvloop, installed with DARA) and the SDK on asyncio.run; 'asyncio' or 'uvloop' runs both on that loop",
    )
    parser.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="uvicorn's HTTP parser for DARA (default %(default)s: httptools if installed, as `python -m app`)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds per side, sides alternating; the table shows each figure's median (default %(default)s)",
    )
    parser.add_argument(
        "--goal", type=float, default=1.25, help="the DARA/SDK cost ratio to meet (default %(default)s)"
    )
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile the measured process during the measured phases",
    )
    parser.add_argument("--profile-dir", default="bench-profiles", help="where --profile writes (default %(default)s)")
    parser.add_argument(
        "--count-requests", action="store_true", help="count the in-process server's requests per run, by kind"
    )
    parser.add_argument(
        "--sdk-on-dara-server",
        action="store_true",
        help="run the bare SDK on DARA's in-process server (app.durable.in_process) instead of its own LocalConnection: the framework's cost alone",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=0,
        help="also hold the N runs suspended this many seconds and measure the CPU they cost meanwhile",
    )
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--role", choices=("sdk", "dara-server"), help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    parser.add_argument("--profile-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sides = set(args.sides.split(","))
    if not sides or not sides <= {"sdk", "dara"}:
        parser.error("--sides takes sdk, dara or sdk,dara")
    return args


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> int:
    args = parse_args()
    if args.role and args.count_requests:
        count_requests()
    if args.role == "dara-server":
        dara_server(args)
        return 0
    if args.role == "sdk":
        last = [0.0]

        def progress(phase: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] > 0.1:
                last[0] = now
                emit({"progress": [phase, done, total]})

        if args.loop == "uvloop":
            import uvloop

            emit({"result": uvloop.run(sdk_side(args, progress))})
        else:
            emit({"result": asyncio.run(sdk_side(args, progress))})
        return 0

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through dara_side's `finally`, which stops the service

    signal.signal(signal.SIGTERM, interrupted)
    return asyncio.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
