"""Postgres going away and coming back, with runs waiting on it (app.durable.postgres_backend).

The outage test stops the embedded Postgres for :data:`OUTAGE` seconds (as long as the
issue's; every timer below falls due during it) while one run sleeps
and another waits with a short deadline. During it, requests that need the database
answer 503 quickly (the client gives up after :data:`FAST` seconds, so a hang fails the
test) and /health says the backend is down. Postgres then starts again, DARA is not
restarted, and requests work again, the LISTEN
connection is back, and the timers have fired: the sleep finished, the wait timed out.
The issue's goal is within 5 s; no test measures it. It holds by construction: each
loop that meets the outage retries on a short fixed cap (the pool on the next request,
the listener every 1 s, the timers every MAX_BACKOFF s), and those caps are tested here
on their own, by counts and a fake clock. The time it takes is printed (``-s``) and kept
in docs/PERFORMANCE.md.

The timer driver's backoff is tested on its own too, with a fake clock; and the pool
alone: after a restart only one session meets a dead connection, and after a long
outage it reconnects at once rather than on psycopg_pool's doubling schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from resonate_pg import PostgresConnection

from app.durable import postgres_backend
from app.durable.postgres_backend import (
    MAX_BACKOFF,
    TIMER_TICK,
    BackendUnreachable,
    PoolSessions,
    PostgresBackend,
    TimerDriver,
    describe,
)
from tests.harness import Service, make_settings, running_service, sign
from tests.postgres import EmbeddedPostgres

#: Seconds Postgres stays down: the issue's outage, longer than every timer below.
OUTAGE = 30.0
#: Seconds the pool alone is cut off: long enough for psycopg_pool's doubling waits to show.
POOL_OUTAGE = 8.0
#: Seconds the sleep and the wait's deadline last (both fall due during the outage).
TIMER = 3.0
#: Seconds a client waits for an answer during the outage: a hang is a failure.
FAST = 5.0
#: Seconds after Postgres is back before a check gives up: only against a hang.
EVENTUALLY = 60.0
ALERT_AFTER = 2.0


# -- the timer driver, on a fake clock ------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """``process_timeouts()`` that fails while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise BackendUnreachable("no Postgres connection within 1.5 s; last error: Connection refused")


def driver(clock: FakeClock, fire: Callable[[], Any], alert_after: float = 10.0) -> TimerDriver:
    return TimerDriver(fire, alert_after=alert_after, clock=clock, sleep=clock.sleep)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage() and r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_timer_driver_backs_off_to_a_cap_and_never_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=postgres_backend.__name__)
    clock, fire = FakeClock(), Flaky()
    timers = driver(clock, fire)

    assert [await timers.tick() for _ in range(3)] == [TIMER_TICK] * 3
    fire.down = True
    delays = [await timers.tick() for _ in range(200)]  # far past any "give up" point
    assert delays[:4] == [2 * TIMER_TICK, 4 * TIMER_TICK, min(8 * TIMER_TICK, MAX_BACKOFF), MAX_BACKOFF]
    assert max(delays) == MAX_BACKOFF and delays[-1] == MAX_BACKOFF
    assert fire.calls == 203  # it kept calling
    fire.down = False
    assert await timers.tick() == TIMER_TICK  # back to the steady tick at once
    assert timers.failures == 0

    # One warning for the outage and one for its end, not one per attempt.
    assert len(messages(caplog, "process_timeouts() failed")) == 1
    assert len(messages(caplog, "works again")) == 1


@pytest.mark.anyio
async def test_timer_driver_alerts_once_when_timers_fall_behind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=postgres_backend.__name__)
    clock, fire = FakeClock(), Flaky()
    timers = driver(clock, fire, alert_after=10.0)
    await timers.tick()
    assert not timers.behind

    fire.down = True
    for _ in range(3):
        clock.now += await timers.tick()
    assert not timers.behind and not messages(caplog, "ALERT")  # 3.5 s: late, not yet behind
    for _ in range(20):
        clock.now += await timers.tick()
    assert timers.behind and timers.lag >= 10.0
    assert len(messages(caplog, "ALERT timers are behind")) == 1
    assert "Connection refused" in messages(caplog, "ALERT")[0]

    fire.down = False
    await timers.tick()
    assert not timers.behind and timers.lag == 0
    fire.down = True  # a second outage alerts again
    for _ in range(20):
        clock.now += await timers.tick()
    assert len(messages(caplog, "ALERT timers are behind")) == 2


@pytest.mark.anyio
async def test_timer_driver_runs_on_its_tick_until_cancelled() -> None:
    clock, fire = FakeClock(), Flaky()
    timers = driver(clock, fire)

    class Enough(Exception):
        pass

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 6:
            raise Enough
        fire.down = 2 <= len(clock.sleeps) < 4

    timers._sleep = sleep
    with pytest.raises(Enough):
        await timers.run()
    assert clock.sleeps == [TIMER_TICK, TIMER_TICK, 2 * TIMER_TICK, 4 * TIMER_TICK, TIMER_TICK, TIMER_TICK]


def test_reasons_name_no_host_or_socket() -> None:
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "db.internal" (10.0.0.7), port 5432 failed: '
        "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
    )
    socket = psycopg.OperationalError(
        'connection is bad: connection to server on socket "/tmp/x/.s.PGSQL.5432" failed: '
        "No such file or directory\n\tIs the server running locally?"
    )
    assert describe(refused) == "Connection refused"
    assert describe(socket) == "No such file or directory"
    assert describe(TimeoutError()) == "no answer in time"


def test_the_overridden_resonate_pg_internals_are_still_there() -> None:
    """PostgresBackend overrides these; a resonate-pg that renames them must fail here."""
    for name in ("_drain", "_listen_once", "_listen_loop", "_fire_timers"):
        assert callable(getattr(PostgresConnection, name, None)), name
    from resonate_pg import connection

    assert connection.PROCESS_TIMEOUTS_SQL == "SELECT resonate.process_timeouts()"
    backend = PostgresBackend("postgresql:///unused", pid="p", group="g", timeout=1, alert_after=5)
    assert backend._running is False and backend._drive_timers is False  # attributes it reads


@pytest.mark.anyio
async def test_the_listener_listens_again_every_second_while_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector's ladder climbs towards 60 s between LISTEN attempts; DARA's stays at
    1 s, so notifications come back a second after Postgres does (the pump's tick covers
    the gap either way)."""
    backend = PostgresBackend("postgresql:///unused", pid="p", group="g", timeout=1, alert_after=5)
    attempts = 0

    async def unreachable() -> Any:
        nonlocal attempts
        attempts += 1
        raise BackendUnreachable("no Postgres connection within 1.5 s; last error: Connection refused")

    class Enough(Exception):
        pass

    waits: list[float] = []

    async def sleeper(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            raise Enough

    monkeypatch.setattr(backend.sessions, "dedicated", unreachable)
    backend._sleeper = sleeper
    backend._running = True
    with pytest.raises(Enough):
        await backend._listen_loop()
    assert (attempts, waits) == (6, [1.0] * 6)


@pytest.mark.anyio
async def test_a_start_after_stop_leaves_no_timer_driver_behind() -> None:
    """Resonate spawns start() as a task, so it can run after stop() (a quick shutdown)."""
    backend = PostgresBackend("postgresql:///unused", pid="p", group="g", timeout=1, alert_after=5)
    await backend.stop()
    await backend.start()
    assert backend._timer_task is None


# -- the outage ------------------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path, postgres_server: EmbeddedPostgres, postgres_dsn: str) -> Iterator[Service]:
    settings = make_settings(tmp_path, postgres_dsn=postgres_dsn, deploy_on_start=False, timer_alert_after=ALERT_AFTER)
    with running_service(settings) as svc:
        try:
            yield svc
        finally:
            if not postgres_server.running:  # whatever failed, leave the server up for others
                postgres_server.start()


def poll[T](check: Callable[[], T | None], within: float, what: str) -> T:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            if (last := check()) is not None:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {within} s; last: {last!r}")


def test_runs_survive_an_outage_and_resume_without_a_restart(
    service: Service, postgres_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    http = service.http
    assert http.get("/health").json() == {"status": "ok", "resonate": "postgres", "workspace": "embedded"}

    start = {"pipeline": "sleeps", "id": "sleeper", "params": {"seconds": TIMER}}
    assert http.post("/runs", json=start).status_code == 201
    start = {"pipeline": "waits_for_callback", "id": "deadline", "params": {"timeout_seconds": TIMER}}
    assert http.post("/runs", json=start).status_code == 201
    assert http.post("/runs", json={"pipeline": "waits_for_callback", "id": "callback"}).status_code == 201
    for run in ("sleeper", "deadline", "callback"):
        service.wait_until(run, "waiting", also=lambda r: r["progress"]["seen"] >= 1)
    token = sign(http, "callback:1")
    listens = service.runtime.network.sessions.listener_connects

    stopped = time.monotonic()
    postgres_server.stop()
    with httpx.Client(base_url=service.url, timeout=FAST) as fast:  # a hang raises ReadTimeout
        run = fast.get("/runs/sleeper")
        assert run.status_code == 503 and "unreachable" in run.json()["detail"], run.text
        settle = fast.post("/resolve", json={"id": "callback:1", "value": "early", "token": token})
        assert settle.status_code == 503 and "unreachable" in settle.json()["detail"], settle.text
        health = fast.get("/health")
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "degraded" and "unreachable" in body["problem"]
        assert str(postgres_server.socket_dir) not in body["problem"]  # /health is open: no paths
        assert fast.post("/runs", json={"pipeline": "sleeps", "id": "during"}).status_code == 503
        listing = fast.get("/runs")  # on the backend's pool, which fails fast
        assert listing.status_code == 503 and "did not answer the run listing" in listing.json()["detail"], listing.text
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))  # every timer falls due
        assert fast.get("/health").status_code == 503
    assert messages(caplog, "ALERT timers are behind")
    assert len(messages(caplog, "process_timeouts() failed")) == 1  # once per outage

    postgres_server.start()
    back = time.monotonic()
    with httpx.Client(base_url=service.url, timeout=FAST) as fast:

        def healthy() -> dict | None:
            answer = fast.get("/health")
            return answer.json() if answer.status_code == 200 else None

        assert poll(healthy, EVENTUALLY, "/health ok") == {
            "status": "ok",
            "resonate": "postgres",
            "workspace": "embedded",
        }
        poll(lambda: service.runtime.network.sessions.listener_connects > listens or None, EVENTUALLY, "LISTEN again")

        def ended(run_id: str) -> Callable[[], dict | None]:
            def check() -> dict | None:
                answer = fast.get(f"/runs/{run_id}")
                return (
                    answer.json()
                    if answer.status_code == 200 and answer.json()["status"] not in ("running", "waiting")
                    else None
                )

            return check

        assert poll(ended("sleeper"), EVENTUALLY, "the sleep's end")["status"] == "done"
        assert poll(ended("deadline"), EVENTUALLY, "the deadline")["status"] == "timed_out"
        settle = fast.post("/resolve", json={"id": "callback:1", "value": "late", "token": token})
        assert settle.status_code == 200 and settle.json()["state"] == "resolved", settle.text
        assert poll(ended("callback"), EVENTUALLY, "the callback's run")["result"] == "late"
    print(f"everything worked again {time.monotonic() - back:.1f} s after Postgres was back")
    assert messages(caplog, "process_timeouts() works again")


# -- the pool ----------------------------------------------------------------------------


async def select_1(sessions: PoolSessions) -> str:
    try:
        async with sessions.session() as conn:
            await (await conn.execute("SELECT 1")).fetchone()
    except BackendUnreachable:
        return "unreachable"
    return "ok"


@pytest.mark.anyio
async def test_after_a_restart_only_the_first_session_finds_a_dead_connection(
    postgres_server: EmbeddedPostgres, postgres_dsn: str
) -> None:
    """Idle connections die with the server; one that fails has the pool check the rest."""
    sessions = PoolSessions(postgres_dsn, timeout=1.5)
    try:
        async with contextlib.AsyncExitStack() as stack:  # four connections, then idle in the pool
            for _ in range(4):
                await (await (await stack.enter_async_context(sessions.session())).execute("SELECT 1")).fetchone()
        await asyncio.to_thread(postgres_server.stop)
        await asyncio.to_thread(postgres_server.start)
        assert [await select_1(sessions) for _ in range(4)] == ["unreachable", "ok", "ok", "ok"]
    finally:
        await sessions.close()
        if not postgres_server.running:
            postgres_server.start()


@pytest.mark.anyio
async def test_the_pool_reconnects_soon_after_a_long_outage(
    postgres_server: EmbeddedPostgres, postgres_dsn: str
) -> None:
    """psycopg_pool doubles its wait between reconnect attempts (1, 2, 4, 8, 16 s...):
    after this 8 s outage its next attempts come 4-7 s after the server is back (the
    issue saw 24 s after 30 s), and each request meanwhile waits out its timeout and is
    refused. PoolSessions gives each attempt up after RECONNECT_WINDOW (2 s), so the
    next request starts a fresh one: at most one request is refused once the server is
    back (on psycopg_pool's schedule, three were)."""
    sessions = PoolSessions(postgres_dsn, timeout=1.5)
    try:
        assert await select_1(sessions) == "ok"
        await asyncio.to_thread(postgres_server.stop)
        stopped = time.monotonic()
        while time.monotonic() - stopped < POOL_OUTAGE:  # requests keep coming, and fail
            assert await select_1(sessions) == "unreachable"
        await asyncio.to_thread(postgres_server.start)
        refused_after = 0  # requests refused once Postgres was back
        while await select_1(sessions) != "ok":
            refused_after += 1
            assert refused_after < 20, "the pool never connected again"
        assert refused_after <= 1, f"{refused_after} requests refused after Postgres was back"
    finally:
        await sessions.close()
        if not postgres_server.running:
            postgres_server.start()
