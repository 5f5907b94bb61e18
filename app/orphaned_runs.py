"""Databricks runs that no DARA record names, cancelled once their DARA run has ended.

The cancel service (app.services.cancelling) and the watchers (app.watchers) cancel
the Databricks runs a run's steps recorded. One window escapes them: a step's
``run-now`` call in flight when its DARA run is cancelled, fails or times out. The
Databricks run starts, but the step's result can no longer be recorded (the backend
refuses a step of a run that ended), so no record names it and nothing would ever
cancel it: it runs, and bills, to its end. The step itself closes most of that window:
once run-now answered, it reads its DARA run and, if that ended, cancels the run it
started (steps.undone, app.durable.run_ended) -- without a listing, so also where no
run is watched. What is left is this sweep's: the run ending between that read and the
result being recorded, a cancel that failed there, and a crash between ``run-now``
answering and the result being recorded, which leaves the same orphan once the run
then ends. The sweep runs only while a watcher here lists runs.

Every run DARA starts with a callback carries the wait's promise id and its signature
in its notebook parameters (app.callback_tokens), and ``runs/list`` shows a run's
parameters. So the listing of active runs the watchers already make (app.active_runs)
is swept here as its pages arrive: a run whose signature is this DARA's, and whose
DARA run ended short of success, is cancelled -- once, and logged. Nothing is asked of
Databricks but the cancel: the listing is paid for, and a run's root promise is read
from DARA's own backend. A run whose DARA run succeeded is left alone, as its watcher
leaves it (a notebook may go on after calling back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from resonate.resonate import Resonate

from app.callback_tokens import PROMISE_WIDGET, SIGNATURE_WIDGET, CallbackSigner
from app.durable.resonate_format import get_promise, run_of
from app.watched_runs import WatchedRuns

logger = logging.getLogger(__name__)

#: States a cancel still has to end (``TERMINATING`` is ending already: cancelled, most likely).
_CANCELLABLE = {"QUEUED", "PENDING", "BLOCKED", "RUNNING", "WAITING_FOR_RETRY"}
#: Runs remembered as cancelled here, so a listing made before the cancel took effect
#: does not cancel them again; the oldest are forgotten past this many.
MAX_CANCELLED = 10_000


def dara_callback(run: jobs.BaseRun) -> tuple[str, str] | None:
    """The promise id and signature ``run`` was started with, if it carries both."""
    params: dict[str, str] = {}
    if run.overriding_parameters is not None and run.overriding_parameters.notebook_params:
        params |= run.overriding_parameters.notebook_params
    for param in run.job_parameters or []:  # a job with job-level parameters passes them so
        if param.name and param.value is not None:
            params.setdefault(param.name, param.value)
    promise_id, signature = params.get(PROMISE_WIDGET), params.get(SIGNATURE_WIDGET)
    if not isinstance(promise_id, str) or not isinstance(signature, str) or not promise_id or not signature:
        return None
    return promise_id, signature


class OrphanSweep:
    """Cancels the listed runs this DARA started for a run that ended short of success."""

    def __init__(self, resonate: Resonate, w: WorkspaceClient, signer: CallbackSigner, watched: WatchedRuns) -> None:
        self.resonate = resonate
        self.w = w
        self.signer = signer
        self.watched = watched
        #: Databricks run -> the DARA run it was cancelled for; for tests and the log.
        self.cancelled: dict[int, str] = {}
        #: Runs offered by a listing and not checked yet, by id (a later page's copy wins).
        self._pending: dict[int, str] = {}
        self._draining: asyncio.Task[None] | None = None

    def offer(self, runs: Iterable[jobs.BaseRun]) -> None:
        """Check, in the background, the runs of a listing's page that carry this DARA's
        callback; never delays the watcher whose lookup brought the page in."""
        for run in runs:
            # A run a watcher here looks at is recorded: that watcher cancels it.
            if run.run_id is None or run.run_id in self.cancelled or self.watched.get(run.run_id) is not None:
                continue
            state = run.state.life_cycle_state if run.state is not None else None
            callback = dara_callback(run)
            if state is None or state.value not in _CANCELLABLE or callback is None:
                continue
            promise_id, signature = callback
            # Only a signature of this DARA's secret: a parameter named promise_id on
            # someone else's run, or another DARA's, must never get it cancelled here.
            if self.signer.issued_for(promise_id, signature) is not None:
                self._pending[run.run_id] = promise_id
        if self._pending and (self._draining is None or self._draining.done()):
            self._draining = asyncio.create_task(self._drain(), name="dara-orphan-sweep")

    async def _drain(self) -> None:
        while self._pending:
            run_id = next(iter(self._pending))
            promise_id = self._pending.pop(run_id)
            try:
                await self._check(run_id, promise_id)
            except Exception:  # a bug: the next listing offers the run again
                logger.exception("checking Databricks run %s for an orphan failed", run_id)

    async def _check(self, run_id: int, promise_id: str) -> None:
        dara_run = run_of(promise_id)
        try:
            root = await get_promise(self.resonate, dara_run)
        except Exception as exc:  # noqa: BLE001 -- not knowing is no reason to cancel; the next listing asks again
            logger.warning("could not read run %s for Databricks run %s: %s", dara_run, run_id, exc)
            return
        # Pending: its steps' records and watchers see to it. Gone: purged long after it
        # ended, or another deployment's that shares the secret -- not known to be ours.
        # Resolved: it succeeded, and a run that succeeded keeps what it started.
        if root is None or not root.state.startswith("rejected"):
            return
        try:
            await asyncio.to_thread(self.w.jobs.cancel_run, run_id)
        except Exception as exc:  # noqa: BLE001 -- the next listing that shows it tries again
            logger.warning("could not cancel Databricks run %s of ended run %s: %s", run_id, dara_run, exc)
            return
        self.cancelled[run_id] = dara_run
        while len(self.cancelled) > MAX_CANCELLED:
            del self.cancelled[next(iter(self.cancelled))]
        logger.warning(
            "cancelled Databricks run %s: run %s ended (%s) before recording that it started it",
            run_id,
            dara_run,
            root.state,
        )
