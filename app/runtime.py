"""Everything the service holds while it runs, started and stopped in one place.

The Resonate instance (with every pipeline registered and every step dependency
provided, by app.wiring), the workspace client, the callback signer and, on embedded defaults, the
local workspace. Built by the FastAPI lifespan; tests build it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from databricks.sdk import WorkspaceClient
from resonate.resonate import Resonate
from resonate.timing import now_ms
from resonate.types import PromiseRecord
from resonate_base.connections import Network

from app.active_runs import ActiveRuns
from app.callback_tokens import CallbackSigner, load_or_create_secret
from app.durable import Pipeline, RunMeta, catalog
from app.durable.create_replies import CreateReplies
from app.durable.in_process import InProcessServer
from app.durable.lakebase import RotatingPassword, lakebase_credential
from app.durable.retries import sdk_retry_policy
from app.durable.run_index import InProcessRunIndex, PostgresRunIndex, RunIndex, SearchRunIndex
from app.durable.run_meta import RUN_META
from app.logs import bind_run
from app.metrics import Metrics
from app.orphaned_runs import OrphanSweep
from app.services.run_events import RunEventChecks
from app.services.run_status import links_host
from app.settings import Settings
from app.tracing import Tracing
from app.watched_runs import WatchedRuns
from app.wiring import service_pipelines, wire_runtime
from app.workspace.client import workspace_client
from app.workspace.deploy import deploy_demo
from app.workspace.embedded_claim import EmbeddedClaim
from steps.task_graph_root import TaskGraphRoot, WorkspaceRoot
from steps.uploaded_files import UploadStore

if TYPE_CHECKING:  # brickhouse comes with the `local` extra, which a Databricks App lacks
    from app.workspace.embedded import EmbeddedWorkspace

logger = logging.getLogger(__name__)

GROUP = "dara"
#: Seconds between rounds of deleting runs past DARA_RUN_RETENTION.
COLLECT_EVERY_SECONDS = 3600.0


def postgres_password(settings: Settings) -> Callable[[], str] | None:
    """The Postgres password source: a rotating Lakebase credential, or None (the DSN's own)."""
    if not settings.lakebase_instance:
        return None
    return _lakebase_password(settings.lakebase_instance, settings.databricks_host, settings.databricks_profile)


@functools.cache  # one per process: every connection shares the credential it renews
def _lakebase_password(instance: str, host: str | None, profile: str | None) -> Callable[[], str]:
    from databricks.sdk.config import Config

    workspace = WorkspaceClient(config=Config(host=host, profile=profile))
    return RotatingPassword(lakebase_credential(workspace, instance))


def resonate_network(settings: Settings, pid: str) -> Network | None:
    """The connection for the configured backend; None means "use ``url``"."""
    if settings.resonate_url:
        return None
    if settings.postgres_dsn:
        from app.durable.postgres_backend import PostgresBackend  # optional backend: import on use

        return PostgresBackend(
            settings.postgres_dsn,
            pid=pid,
            group=GROUP,
            timeout=settings.postgres_timeout,
            alert_after=settings.timer_alert_after,
            drive_timers=settings.postgres_drive_timers,
            password=postgres_password(settings),
        )
    return InProcessServer(pid=pid, group=GROUP)


#: Lease of a task on the in-process server. The SDK does not heartbeat an
#: in-process connection, so a lease there simply expires -- and a step running longer than
#: it (a slow SQL statement, a throttled API) would be handed out and run again while
#: still running. The server dies with the process, so nothing needs the lease to end.
IN_PROCESS_LEASE = timedelta(days=365)


def build_resonate(settings: Settings, *, network: Network | None = None, pid: str | None = None) -> Resonate:
    """A Resonate client for ``settings``' backend. Must be called on the event loop."""
    pid = pid or uuid.uuid4().hex
    network = network if network is not None else resonate_network(settings, pid)
    return Resonate(
        url=settings.resonate_url,
        network=network,
        ttl=IN_PROCESS_LEASE if isinstance(network, InProcessServer) else settings.lease,
        group=GROUP,
        pid=pid,
        # Workflows never retry in the SDK; steps retry as they declare (app.durable.retries).
        # The SDK default would retry ~30 times.
        retry_policy=sdk_retry_policy(),
        env={},  # settings already read RESONATE_URL; don't let the SDK read it twice
    )


@dataclass
class Runtime:
    settings: Settings
    resonate: Resonate
    workspace: WorkspaceClient
    signer: CallbackSigner
    pipelines: dict[str, Pipeline]
    embedded: EmbeddedWorkspace | None = None
    #: The in-process Resonate server, when that is the backend (it cannot search).
    local_server: InProcessServer | None = None
    #: Whether the backend times waits out at their deadline (else a watchdog does).
    backend_times_out: bool = False
    #: This worker's claim to the embedded workspace on a shared database (app.workspace.embedded_claim).
    claim: EmbeddedClaim | None = None
    #: The connection to the backend (None: the SDK's own, to RESONATE_URL).
    network: Network | None = field(default=None, repr=False)
    #: This runtime's Prometheus metrics (GET /metrics), in a registry of its own.
    metrics: Metrics = field(default_factory=Metrics, repr=False)
    #: OpenTelemetry spans, when OTEL_EXPORTER_OTLP_ENDPOINT is set and the otel extra installed.
    tracing: Tracing | None = field(default=None, repr=False)
    _collector: asyncio.Task[None] | None = field(default=None, repr=False)
    #: With run events on, reads the paced listing's pages between the watchers' looks.
    _lister: asyncio.Task[None] | None = field(default=None, repr=False)
    #: Lists the backend's runs (app.durable.run_index); by default, the backend's own.
    run_index: RunIndex = None  # type: ignore[assignment]  # __post_init__ fills it in
    #: Where task graphs are read (DARA_JOBS_ROOT), for routes and steps alike.
    task_graphs: TaskGraphRoot = field(init=False)
    #: Where their files may go in the workspace (DARA_NOTEBOOK_DIR).
    workspace_root: WorkspaceRoot = field(init=False)
    #: Uploaded files, by opaque handle, until their run has put them in a volume.
    uploads: UploadStore = field(init=False)
    #: The workspace's active runs, listed once per DARA_WATCH_INTERVAL for every run watcher.
    active_runs: ActiveRuns = field(init=False)
    #: The runs this process's watchers look at, for the run events that name them.
    watched_runs: WatchedRuns = field(init=False)
    #: The checks Databricks' run events start (app.services.run_events).
    run_events: RunEventChecks = field(init=False)
    #: Set when the server begins to shut down (app.server.DrainingServer): long polls
    #: answer at once with what they have, rather than being cancelled mid-request.
    draining: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        self.task_graphs = TaskGraphRoot(self.settings.jobs_root)
        self.workspace_root = WorkspaceRoot(self.settings.notebook_dir)
        self.uploads = UploadStore(self.settings.state_dir / "uploads")
        # With run events on, the listing is only their backstop, paced to a call budget.
        paced = self.settings.watch_calls_per_minute if self.settings.run_events_enabled else None
        self.watched_runs = WatchedRuns()
        self.active_runs = ActiveRuns(
            self.workspace,
            self.settings.watch_interval.total_seconds(),
            calls_per_minute=paced,
            orphans=OrphanSweep(self.resonate, self.workspace, self.signer, self.watched_runs),
        )
        self.run_events = RunEventChecks(
            self.resonate, self.workspace, self.active_runs, self.watched_runs, self.settings
        )
        if self.run_index is None:
            self.run_index = run_index(self.settings, self.resonate, self.local_server, self.network)

    @classmethod
    async def start(
        cls, settings: Settings, *, network: Network | None = None, pipelines: Iterable[Pipeline] | None = None
    ) -> Runtime:
        """Start everything for ``settings``; run ``pipelines`` (default: the service's own)."""
        if settings.postgres_dsn and not settings.resonate_url:
            from app.durable import postgres_schema  # psycopg: import on use, as resonate_pg

            # A database without the resonate-pg schema is refused now, saying how to apply it.
            password = postgres_password(settings)
            await asyncio.to_thread(
                lambda: postgres_schema.check(settings.postgres_dsn or "", password() if password else None)
            )
        embedded = None
        if settings.uses_embedded_workspace:
            directory = settings.state_dir / "workspace"
            from app.workspace.embedded import EmbeddedWorkspace  # the `local` extra

            embedded = await asyncio.to_thread(EmbeddedWorkspace(directory).start)
        claim = None
        try:
            if embedded is not None and settings.postgres_dsn and not settings.resonate_url:
                claim = await EmbeddedClaim.take(settings.postgres_dsn, embedded.host)
            workspace = workspace_client(settings, embedded)
            signer = CallbackSigner(callback_secret(settings), settings.callback_base_url, settings.callback_base_urls)
            if settings.deploy_on_start:
                job_id = await asyncio.to_thread(deploy_demo, workspace, settings.notebook_dir, settings.demo_job_name)
                logger.info("demo job %r is job %s", settings.demo_job_name, job_id)
            pid = uuid.uuid4().hex
            network = network or resonate_network(settings, pid)
            resonate = build_resonate(settings, network=network, pid=pid)
        except BaseException:
            if claim is not None:
                await claim.release()
            if embedded is not None:
                embedded.stop()
            raise
        local = network if isinstance(network, InProcessServer) else None
        if local is not None:
            logger.warning(
                "Resonate runs in-process: runs live in this process's memory and are lost "
                "when it stops; set RESONATE_URL or DARA_POSTGRES_DSN to keep them"
            )
        runtime = cls(
            settings,
            resonate,
            workspace,
            signer,
            service_pipelines() if pipelines is None else catalog(*pipelines),
            embedded,
            local,
            # resonate-pg (process_timeouts) and the Resonate server (v0.9.8) time every
            # pending wait out themselves; DARA's in-process server says so itself.
            backend_times_out=getattr(network, "times_out_waits", bool(settings.resonate_url or settings.postgres_dsn)),
            network=network,  # before __post_init__: the run index lists on its pool
        )
        runtime.claim = claim
        runtime.tracing = Tracing.configure(settings)
        runtime.metrics.count_databricks_errors(workspace)
        runtime.wire()
        runtime._collector = asyncio.create_task(runtime.collect_old_runs(), name="dara-run-retention")
        if runtime.active_runs.paced is not None:
            runtime._lister = asyncio.create_task(runtime.active_runs.keep_listing(), name="dara-paced-listing")
        # Uploads a run never took (the service stopped first) outlive no run's deadline.
        purged = await asyncio.to_thread(runtime.uploads.purge, settings.run_deadline)
        if purged:
            logger.info("removed %d upload(s) older than DARA_RUN_DEADLINE", purged)
        return runtime

    def wire(self) -> None:
        """Register pipelines, watchers and what steps are given (app.wiring)."""
        wire_runtime(self)

    async def backend_problem(self) -> str | None:
        """What is wrong with the backend now, for /health; None if nothing (or it cannot tell)."""
        problem = getattr(self.network, "problem", None)  # app.durable.postgres_backend
        return await problem() if problem is not None else None

    @property
    def workspace_host(self) -> str:
        """The host links to the workspace's runs are built on (app.services.run_status.links_host)."""
        return links_host(self.settings, self.workspace.config.host)

    def may_cancel(self, user: str, started_by: str) -> bool:
        """Whether ``user`` may cancel a run ``started_by`` started: its owner or an admin."""
        return user == started_by or user in self.settings.admins

    async def start_run(
        self, run_id: str, pipeline: Pipeline, params: dict[str, Any], *, started_by: str
    ) -> tuple[RunMeta, PromiseRecord | None]:
        """Start ``pipeline`` as ``run_id`` for ``started_by``; returns once its root promise exists.

        Starting an id that exists already is a no-op: Resonate dedupes on the id, and
        the run keeps the facts (owner, incarnation) of its first start. Returns the facts
        this start offered (the run is this start's if its incarnation is theirs) and,
        where the backend keeps create replies, the run's root promise as the create
        found or made it (else None: read it).
        """
        deadline: timedelta = pipeline.deadline or self.settings.run_deadline
        facts = RunMeta.new(started_by)
        meta = {RUN_META: facts.as_kwarg()}
        bind_run(run_id)  # the rest of this request's log lines are about this run
        replies: CreateReplies | None = getattr(self.network, "create_replies", None)
        if replies is not None:
            replies.expect(run_id)
        try:
            with eager_tasks() if self.local_server is not None else contextlib.nullcontext():
                handle = self.resonate.options(timeout=deadline).run(run_id, pipeline.durable, **params, **meta)
            await handle.id()
        finally:
            root = replies.take(run_id, self.resonate) if replies is not None else None
        return facts, root

    async def collect_old_runs(self, every: float | None = None) -> None:
        """Delete runs that ended more than DARA_RUN_RETENTION ago: at start, then every
        ``every`` s (default COLLECT_EVERY_SECONDS, read now, so a test can shorten it)."""
        every = COLLECT_EVERY_SECONDS if every is None else every
        while True:
            cutoff = now_ms() - int(self.settings.run_retention.total_seconds() * 1000)
            try:
                if purged := await self.run_index.purge(cutoff):
                    logger.info("deleted %d run(s) that ended over DARA_RUN_RETENTION ago", purged)
            except Exception as exc:  # noqa: BLE001 -- the next round tries again
                logger.warning("could not delete old runs (next try in %.0f s): %s", every, exc)
            await asyncio.sleep(every)

    async def stop(self) -> None:
        if self._collector is not None:
            self._collector.cancel()
        if self._lister is not None:
            self._lister.cancel()
        try:
            await self.run_events.close()
            await asyncio.wait_for(self.resonate.stop(), timeout=10)
        except TimeoutError:
            logger.warning("Resonate did not stop within 10s; leaving its tasks to the server")
        finally:
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)
            if self.claim is not None:
                await self.claim.release()
            if self.tracing is not None:  # export the spans still buffered
                await asyncio.to_thread(self.tracing.shutdown)


def run_index(
    settings: Settings, resonate: Resonate, local: InProcessServer | None, network: Network | None = None
) -> RunIndex:
    """How this backend lists its runs: it cannot always be asked (app.durable.run_index)."""
    if local is not None:
        return InProcessRunIndex(local)
    sessions = getattr(network, "sessions", None)  # app.durable.postgres_backend.PostgresBackend's pool
    if settings.postgres_dsn and not settings.resonate_url and sessions is not None:
        return PostgresRunIndex(sessions)
    return SearchRunIndex(resonate)


@contextlib.contextmanager
def eager_tasks() -> Iterator[None]:
    """Tasks created inside run at once, up to their first real wait, not a loop turn later.

    ``Resonate.run`` spawns a task that creates the run, which spawns the run itself.
    Under load a loop turn is milliseconds of other runs' work, and a start waited a
    turn for each before it could answer: at N=1,000 this took start answers from
    1.3x the bare SDK's latency to below it (docs/PERFORMANCE.md). Used for the
    in-process server only, where creating a run never leaves the process; the remote
    connections' HTTP and Postgres clients have not been tested with eager tasks.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


def callback_secret(settings: Settings) -> str:
    if settings.callback_secret:
        return settings.callback_secret.get_secret_value()
    return load_or_create_secret(settings.state_dir / "callback-secret")
