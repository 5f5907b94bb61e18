"""Steps that create and run Databricks jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import jobs
from databricks.sdk.service.compute import ClusterSpec

from steps.injected import CallbackIssuer, StepIdentity
from steps.retryable import DATABRICKS, retried
from steps.undone import undone_if_run_ended


@dataclass(frozen=True)
class JobRun:
    """A Databricks run a step started. ``GET /runs/{id}`` links every one it finds."""

    job_id: int
    run_id: int
    url: str


def find_job_id(w: WorkspaceClient, name: str) -> int | None:
    """The id of the job called ``name``, or None. Refuses to guess between duplicates."""
    ids = [job.job_id for job in w.jobs.list(name=name) if job.job_id is not None]
    if len(ids) > 1:
        msg = f"{len(ids)} jobs are named {name!r} (ids {ids}); pass a job id instead"
        raise LookupError(msg)
    return ids[0] if ids else None


def resolve_job_id(w: WorkspaceClient, job: str | int) -> int:
    """A job given by id (``123`` or ``"123"``) or by name."""
    if isinstance(job, int) or job.isdigit():
        return int(job)
    job_id = find_job_id(w, job)
    if job_id is None:
        msg = f"no job is named {job!r} in {w.config.host}; create it or pass its id"
        raise NotFound(msg)
    return job_id


#: The tag on every job DARA creates. DARA updates only jobs that carry it, so a deploy
#: can never rewrite a job someone else made just by naming it.
MANAGED_TAG, MANAGED_VALUE = "dara_managed", "true"


class JobNotManaged(Exception):  # reads as what it says: the job is not managed
    """A job of that name exists, but DARA did not create it: DARA leaves it alone."""

    def __init__(self, job_id: int, name: str) -> None:
        self.job_id = job_id
        self.name = name
        super().__init__(
            f"job {job_id} {name!r} exists and DARA did not create it; pick another name, or tag it "
            f"{MANAGED_TAG}={MANAGED_VALUE} to let DARA manage it"
        )

    def __reduce__(self) -> tuple[type[JobNotManaged], tuple[int, str]]:
        return (JobNotManaged, (self.job_id, self.name))


def is_managed(settings: jobs.JobSettings | None) -> bool:
    """Whether a job's settings carry DARA's tag."""
    return settings is not None and (settings.tags or {}).get(MANAGED_TAG) == MANAGED_VALUE


def check_managed(w: WorkspaceClient, name: str) -> int | None:
    """The id of the DARA-managed job called ``name``, or None if there is none yet.

    Raises :class:`JobNotManaged` if a job of that name exists without DARA's tag.
    """
    job_id = find_job_id(w, name)
    if job_id is not None and not is_managed(w.jobs.get(job_id).settings):
        raise JobNotManaged(job_id, name)
    return job_id


@retried(DATABRICKS)
def upsert_job(w: WorkspaceClient, settings: jobs.JobSettings, adopt: bool = False) -> int:
    """Create the job named ``settings.name``, or reset it in place if it differs.

    A created job is tagged ``dara_managed=true`` (and keeps the tag on every reset); an
    existing job without the tag is never changed: :class:`JobNotManaged` instead --
    unless ``adopt``, for a job the operator named in DARA's own settings (the demo
    job, which DARA versions before the tag created untagged), never for a caller's name.
    Idempotent: a job whose settings already match is left untouched.
    """
    assert settings.name, "a job upserted by name needs a name"
    name = settings.name
    settings = jobs.JobSettings.from_dict(settings.as_dict())  # a copy: the caller's stays as it was
    settings.tags = {**(settings.tags or {}), MANAGED_TAG: MANAGED_VALUE}
    job_id = find_job_id(w, name)
    if job_id is None:
        # Only the fields as_dict() keeps: JobSettings.from_dict fills absent lists with []
        # and the API refuses fields it does not support even when they are empty.
        fields = {key: getattr(settings, key) for key in settings.as_dict()}
        return w.jobs.create(**fields).job_id  # type: ignore[return-value]
    current = w.jobs.get(job_id).settings
    if not is_managed(current) and not adopt:
        raise JobNotManaged(job_id, name)
    assert current is not None
    if not _contains(current.as_dict(), settings.as_dict()):
        w.jobs.reset(job_id, settings)
    return job_id


def _contains(actual: object, wanted: object) -> bool:
    """Whether ``actual`` already holds everything in ``wanted`` (the API adds defaults)."""
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(_contains(actual.get(key), value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(_contains(a, b) for a, b in zip(actual, wanted, strict=True))
        )
    return actual == wanted


def run_url(w: WorkspaceClient, job_id: int, run_id: int) -> str:
    return f"{w.config.host.rstrip('/')}/jobs/{job_id}/runs/{run_id}"


def cancel_started(started: JobRun, w: WorkspaceClient) -> str:
    """Cancel the run a step started for a DARA run that ended before the step could
    record it (steps.undone). Cancelling a run that already ended is a no-op."""
    w.jobs.cancel_run(started.run_id)
    return f"Databricks run {started.run_id} cancelled"


@undone_if_run_ended(cancel_started)
@retried(DATABRICKS)
def run_job(
    w: WorkspaceClient,
    callbacks: CallbackIssuer,
    info: StepIdentity,
    job: str | int,
    params: dict[str, str],
    callback_to: str | None = None,
    callback_url: str | None = None,
) -> JobRun:
    """Start a job run, passing ``params`` and, with ``callback_to``, a callback.

    The callback is three notebook parameters -- ``promise_id``, ``callback_url`` and
    ``callback_signature`` (the token; parameters named ``*_token`` are refused as
    credentials by some workspaces) -- that the notebook's callback cell posts back.

    The run is started with an idempotency token derived from this step, so if the
    step is executed again after a crash, Databricks returns the run it already has.
    If the DARA run ended while run-now was in flight, the run is cancelled at once
    (:func:`cancel_started`): nothing could record it.
    """
    job_id = resolve_job_id(w, job)
    notebook_params = dict(params)
    if callback_to is not None:
        notebook_params |= callbacks.callback(callback_to, info.incarnation, callback_url).widgets()
    started = w.jobs.run_now(
        job_id=job_id,
        # None rather than {}: overriding parameters is refused for multi-task jobs
        notebook_params=notebook_params or None,
        idempotency_token=info.idempotency_token,
    )
    run_id = started.run_id
    assert run_id is not None
    return JobRun(job_id=job_id, run_id=run_id, url=run_url(w, job_id, run_id))


@undone_if_run_ended(cancel_started)
@retried(DATABRICKS)
def submit_notebook(
    w: WorkspaceClient,
    callbacks: CallbackIssuer,
    info: StepIdentity,
    notebook_path: str,
    params: dict[str, str],
    *,
    existing_cluster_id: str | None = None,
    new_cluster: dict[str, Any] | None = None,
    run_name: str | None = None,
    timeout_seconds: int | None = None,
    callback_to: str | None = None,
    callback_url: str | None = None,
) -> JobRun:
    """Run a notebook once, without a job to define first (``runs/submit``).

    For notebooks a pipeline runs ad hoc, where keeping a job per notebook would only
    be clutter. Compute is ``existing_cluster_id``, a ``new_cluster`` spec (the REST
    API's JSON shape, so it survives being a durable step argument), or neither for
    serverless. Parameters and the callback widgets are passed as in :func:`run_job`.

    The idempotency token makes a re-executed step get back the run the first attempt
    submitted instead of starting a second one.
    """
    if existing_cluster_id is not None and new_cluster is not None:
        msg = "pass existing_cluster_id or new_cluster, not both"
        raise ValueError(msg)
    base_parameters = dict(params)
    if callback_to is not None:
        base_parameters |= callbacks.callback(callback_to, info.incarnation, callback_url).widgets()
    task = jobs.SubmitTask(
        task_key="notebook",
        notebook_task=jobs.NotebookTask(
            notebook_path=notebook_path,
            base_parameters=base_parameters,
        ),
        existing_cluster_id=existing_cluster_id,
        new_cluster=ClusterSpec.from_dict(new_cluster) if new_cluster is not None else None,
    )
    submitted = w.jobs.submit(
        run_name=run_name or f"dara {info.id}",
        tasks=[task],
        timeout_seconds=timeout_seconds,
        idempotency_token=info.idempotency_token,
    )
    # databricks-sdk annotates Wait.response with the builtin any(), not typing.Any.
    run_id = submitted.response.run_id  # type: ignore[attr-defined]
    assert run_id is not None
    # A one-time run still belongs to a (hidden) job; its id is only in runs/get.
    job_id = w.jobs.get_run(run_id).job_id
    assert job_id is not None, f"runs/get of run {run_id} has no job_id"
    return JobRun(job_id=job_id, run_id=run_id, url=run_url(w, job_id, run_id))


@retried(DATABRICKS)
def cancel_run(w: WorkspaceClient, run_id: int) -> int:
    """Ask Databricks to cancel a run (it ends CANCELED shortly after); returns the id.

    Cancelling a run that already ended is a no-op on Databricks' side.
    """
    w.jobs.cancel_run(run_id)
    return run_id


class NotRepairable(Exception):  # reads as what it says
    """The Databricks run cannot be repaired now: it still runs, or it did not fail."""


#: How a run ends that ``jobs/runs/repair`` reruns the failed tasks of.
REPAIRABLE_RESULTS = {jobs.RunResultState.FAILED, jobs.RunResultState.TIMEDOUT}


@retried(DATABRICKS)
def repair_run(w: WorkspaceClient, run_id: int) -> int:
    """Rerun only the failed tasks of a run that ended failed, as part of the same run;
    returns the repair's id.

    No parameters are passed, so Databricks reruns each task with the ones the run was
    started with -- a notebook's callback widgets among them, so the rerun calls back to
    the same wait. ``latest_repair_id`` is the run's last repair (from its
    ``repair_history``), which Databricks requires from the second repair on and checks,
    so two repairs racing cannot both go through.

    A run still running -- a repair already under way among them, e.g. when this step is
    run again after a crash -- is refused with :class:`NotRepairable`, as is one that
    did not fail: there is nothing to rerun.
    """
    run = w.jobs.get_run(run_id, include_history=True)
    latest = _latest_repair_id(run)
    page = run
    while page.next_page_token:  # repair_history comes 100 items a page
        page = w.jobs.get_run(run_id, include_history=True, page_token=page.next_page_token)
        latest = _latest_repair_id(page) or latest
    state = run.state
    if state is None or state.result_state is None:
        life = state.life_cycle_state.value if state and state.life_cycle_state else "UNKNOWN"
        msg = f"Databricks run {run_id} is {life}: only a run that ended can be repaired"
        raise NotRepairable(msg)
    if state.result_state not in REPAIRABLE_RESULTS:
        msg = f"Databricks run {run_id} ended {state.result_state.value}: it has no failed tasks to rerun"
        raise NotRepairable(msg)
    repair = w.jobs.repair_run(run_id, rerun_all_failed_tasks=True, latest_repair_id=latest).response
    assert repair is not None and repair.repair_id is not None, f"runs/repair of run {run_id} gave no repair_id"
    return repair.repair_id


def _latest_repair_id(run: jobs.Run) -> int | None:
    ids = [item.id for item in run.repair_history or [] if item.type == jobs.RepairHistoryItemType.REPAIR and item.id]
    return ids[-1] if ids else None


def run_state(state: jobs.RunState | None) -> str:
    """How a run (or task) stands: SUCCESS, FAILED, ... once it ended; RUNNING, PENDING, ... before."""
    if state is None:
        return "UNKNOWN"
    if state.result_state is not None:
        return state.result_state.value
    return state.life_cycle_state.value if state.life_cycle_state else "UNKNOWN"
