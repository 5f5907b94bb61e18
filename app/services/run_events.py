"""Databricks job notifications ("run events"): a run's end pushed to DARA and checked at once.

The listing of active runs (app.active_runs) costs a call per 25 active runs: noticing
a dead run within minutes at thousands of waiting runs cannot stay within a few calls
a minute. Databricks can push the end instead. A job whose ``webhook_notifications``
name a notification destination of the generic webhook kind POSTs JSON on its run
events, with the destination's user name and password as HTTP Basic auth::

    {"event_type": "jobs.on_failure", "workspace_id": "1234567890123456",
     "run": {"run_id": 456}, "job": {"job_id": 789, "name": "dara-demo"}}

DARA takes them at ``POST /api/databricks/run-events`` (app.routers.run_events) when
DARA_RUN_EVENTS_USER and DARA_RUN_EVENTS_PASSWORD are set, and the listing becomes a
backstop paced to DARA_WATCH_CALLS_PER_MINUTE, for events that were lost.

Nothing in the body is trusted but the run id, and that only to choose a run to check.
An end event (``jobs.on_success``, ``jobs.on_failure``) for a run a watcher of this
process looks at (app.watched_runs) makes DARA read that run (one ``runs/get``) after the
watcher's grace for an in-flight callback, and settle its wait as the watcher's final look
does (app.watchers.check_run): a run that ended without calling back fails now, a wait
already settled (the notebook called back) is left as it is. What the read learned spares
the watcher a read of its own when it next looks. Any other event, and any event for a
run unknown here, is acknowledged and does nothing; the answer is the same either way,
so it tells nobody which runs DARA watches. A run is checked once at a time, and not
again within an interval after a check found it still running: events make DARA call
Databricks no more often than runs end.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from databricks.sdk import WorkspaceClient
from pydantic import BaseModel, ConfigDict, Field
from resonate.resonate import Resonate

from app import watchers
from app.active_runs import ActiveRuns
from app.settings import Settings
from app.watched_runs import WatchedRun, WatchedRuns

logger = logging.getLogger(__name__)

#: The events that say a run ended. ``jobs.on_start`` and the duration and backlog
#: warnings say nothing a wait needs.
ENDED = frozenset({"jobs.on_success", "jobs.on_failure"})
_RUN_ID_MAX = 2**63 - 1


class EventRun(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: int = Field(ge=1, le=_RUN_ID_MAX, description="The Databricks run the event is about.")


class RunEvent(BaseModel):
    """A Databricks job notification, as a generic webhook destination sends it. Fields
    DARA does not read (``workspace_id``, ``job``, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    event_type: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.]+$",
        description="What happened: jobs.on_success and jobs.on_failure end a run; others are acknowledged.",
        examples=["jobs.on_failure"],
    )
    run: EventRun


def is_databricks(settings: Settings, user: str, password: str) -> bool:
    """Whether HTTP Basic credentials are the notification destination's. Both parts are
    always compared, each in constant time, so the answer's timing tells neither."""
    if settings.run_events_user is None or settings.run_events_password is None:
        return False
    user_ok = secrets.compare_digest(user.encode(), settings.run_events_user.encode())
    password_ok = secrets.compare_digest(password.encode(), settings.run_events_password.get_secret_value().encode())
    return user_ok & password_ok


class RunEventChecks:
    """The checks end events start: at most one per run at a time."""

    def __init__(
        self, resonate: Resonate, w: WorkspaceClient, active: ActiveRuns, watched: WatchedRuns, settings: Settings
    ) -> None:
        self.resonate = resonate
        self.w = w
        self.active = active
        self.watched = watched
        self.settings = settings
        #: Runs read after an end event so far; for tests and the benchmark.
        self.checks = 0
        self._checking: dict[int, asyncio.Task[None]] = {}
        #: Run -> when a check last found it still running (monotonic seconds).
        self._found_running: dict[int, float] = {}

    def receive(self, event: RunEvent) -> None:
        """Check the run an end event names, if a watcher here looks at it; else nothing."""
        if event.event_type not in ENDED:
            return
        run_id = event.run.run_id
        watched = self.watched.get(run_id)
        if watched is None or run_id in self._checking:
            return
        found = self._found_running.get(run_id)
        if found is not None and time.monotonic() - found < self.active.interval:
            return  # a check just found it running: the event is early, or not Databricks' own
        self._checking[run_id] = asyncio.create_task(self._check(watched), name=f"dara-run-event-{run_id}")

    def checking(self) -> int:
        """Checks under way."""
        return len(self._checking)

    async def _check(self, watched: WatchedRun) -> None:
        run_id = watched.run.run_id
        try:
            if not watched.settle:  # a callback may still be on its way, as the watcher allows
                await asyncio.sleep(watchers.GRACE_SECONDS)
            details = await asyncio.to_thread(self.w.jobs.get_run, run_id)
            self.checks += 1
            verdict = await watchers.check_run(
                self.resonate,
                self.w,
                watched.run,
                watched.promise_id,
                True,
                watched.settle,
                active=self.active,
                settings=self.settings,
                details=details,
            )
            if verdict == "waiting":  # still running, or held open for a repair
                self._note_running(run_id)
                return
            self.watched.forget(run_id)
            if (ended := watchers.ended_state(details, self.settings)) is not None:
                self.active.saw_ended(run_id, ended)
            logger.info("run event: Databricks run %s checked, its wait %s", run_id, verdict)
        except Exception as exc:  # noqa: BLE001 -- the watcher still looks at the run
            logger.warning("could not check Databricks run %s after its run event (its watcher will): %s", run_id, exc)
        finally:
            self._checking.pop(run_id, None)

    def _note_running(self, run_id: int) -> None:
        now = time.monotonic()
        self._found_running = {run: at for run, at in self._found_running.items() if now - at < self.active.interval}
        self._found_running[run_id] = now

    async def close(self) -> None:
        """Stop the checks under way (the service is stopping; the watchers remain)."""
        tasks = list(self._checking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
