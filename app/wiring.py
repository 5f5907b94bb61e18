"""Everything a worker registers with Resonate, in one place.

Nothing registers itself on import. A worker that runs pipelines registers, here:

* the pipelines it is given -- the service's are listed in ``pipelines.PIPELINES``;
* the watchers that guard their waits (app.watchers), under the names ``Context``
  finds them by (:class:`~app.durable.Watchers`);
* Resonate itself: a wait reads a timed-out promise through it and a failing pipeline
  abandons its waits through it (a dependency of the durable layer), and the watchers'
  steps settle promises through it (given to steps);
* what steps are given by type (:func:`step_dependencies`), each type listed;
* the policies the durable layer reads: retries, wait deadlines, telemetry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from databricks.sdk import WorkspaceClient
from resonate.resonate import Resonate

from app.active_runs import ActiveRuns
from app.durable import Pipeline, RetryPolicy, StepDependencies, WaitDefaults, Watchers, catalog, drive
from app.durable.pipeline import PipelineFunction
from app.durable.telemetry import TelemetryHook
from app.metrics import Metrics
from app.observability import Observability
from app.settings import Settings
from app.watched_runs import WatchedRuns
from app.watchers import EXPIRE, WATCH, WATCHERS
from pipelines import PIPELINES
from steps.injected import CallbackIssuer, StepIdentity
from steps.notify import NotifyConfig, email_recipients
from steps.retryable import DATABRICKS
from steps.task_graph_root import TaskGraphRoot, WorkspaceRoot
from steps.uploaded_files import UploadStore

if TYPE_CHECKING:
    from app.runtime import Runtime


def service_pipelines() -> dict[str, Pipeline]:
    """The pipelines the service runs (``pipelines.PIPELINES``), by name."""
    return catalog(*PIPELINES)


def wire_runtime(runtime: Runtime) -> None:
    """Register the service's pipelines, watchers and dependencies with its Resonate."""
    settings = runtime.settings
    wire(
        runtime.resonate,
        runtime.pipelines.values(),
        step_dependencies(runtime),
        policies=(
            RetryPolicy(settings.step_retries, settings.step_retry_delay, default=DATABRICKS),
            WaitDefaults(settings.callback_timeout, backend_times_out=runtime.backend_times_out),
            TelemetryHook(Observability(runtime.metrics, runtime.tracing)),
        ),
    )


def step_dependencies(runtime: Runtime) -> StepDependencies:
    """What the service gives steps, by the type a step declares."""
    return (
        StepDependencies()
        .provide(WorkspaceClient, runtime.workspace)
        .provide(CallbackIssuer, runtime.signer)
        .step_info_as(StepIdentity)
        .provide(NotifyConfig, notify_config(runtime.settings))
        .provide(TaskGraphRoot, runtime.task_graphs)
        .provide(WorkspaceRoot, runtime.workspace_root)
        .provide(UploadStore, runtime.uploads)
        # The watchers' own steps (app.watchers); they get Resonate from wire().
        .provide(ActiveRuns, runtime.active_runs)
        .provide(WatchedRuns, runtime.watched_runs)
        .provide(Settings, runtime.settings)
        .provide(Metrics, runtime.metrics)
    )


def wire(
    resonate: Resonate,
    pipelines: Iterable[Pipeline],
    steps: StepDependencies,
    *,
    watchers: Mapping[str, PipelineFunction] = WATCHERS,
    policies: Iterable[object] = (),
) -> None:
    """Register ``pipelines``, the ``watchers`` (a test's stand-ins, by the same names),
    ``steps``' dependencies and ``policies`` with ``resonate``."""
    missing = {EXPIRE, WATCH} - watchers.keys()
    if missing:
        msg = f"no watcher is registered as {', '.join(sorted(missing))}: waits need both"
        raise ValueError(msg)
    for pipeline in pipelines:
        resonate.register(pipeline.durable, name=pipeline.name)
    for name, watcher in watchers.items():
        resonate.register(drive(watcher), name=name)
    resonate.with_dependency(Watchers(expire=EXPIRE, watch=WATCH))
    resonate.with_dependency(resonate)
    resonate.with_dependency(steps.provide(Resonate, resonate))
    for policy in policies:
        resonate.with_dependency(policy)


def notify_config(settings: Settings) -> NotifyConfig:
    """Where the notify step sends: DARA_NOTIFY_WEBHOOK_URL, DARA_SMTP_*, DARA_NOTIFY_EMAIL_TO."""
    return NotifyConfig(
        webhook_url=settings.notify_webhook_url,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_user=settings.smtp_user,
        smtp_password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        smtp_from=settings.smtp_from,
        email_to=email_recipients(settings.notify_email_to),
        smtp_starttls=settings.smtp_starttls,
    )
