"""Where a run's status is computed: a run as users see it, read from Resonate's
promises and nothing else.

A run is its root promise (id = run id, param = the pipeline and its arguments, value
= its result or error) plus one child promise per durable operation, ``<id>:1``,
``<id>:2``, ... in call order. Reading them back is all a status view needs, so there
is no task store to keep in step with them: ``GET /runs/{id}`` and ``resonate tree``
can never disagree. How the SDK lays those promises out is app.durable.resonate_format's
to know; this module says what they mean to a user. Beside them, run notes -- promises
too -- say whether a step waits for room (``queued``) and until when a failed Databricks
run may be repaired. Only ``add_listed_states`` reads something else: the worker's
listing of the workspace's active runs, which it already has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from resonate.resonate import Resonate
from resonate.timing import now_ms
from resonate.types import PromiseRecord

from app import repair_windows
from app.active_runs import ListedState
from app.durable import capacity_waits, resonate_format
from app.durable.errors import TIMED_OUT
from app.durable.resonate_format import get_promise
from app.durable.run_meta import RUN_META, RunMeta
from app.settings import Settings

#: Run ids name the root promise. Resonate reserves ":" (it separates child ids).
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
RUN_ID = re.compile(RUN_ID_PATTERN)

RunStatus = Literal["running", "waiting", "done", "failed", "cancelled", "timed_out"]
StepKind = Literal["step", "callback", "sleep", "call", "watcher"]

_STATUS: dict[str, RunStatus] = {
    "pending": "running",
    "resolved": "done",
    "rejected": "failed",
    "rejected_canceled": "cancelled",
    "rejected_timedout": "timed_out",
}


class DatabricksRun(BaseModel):
    job_id: int | None = None
    run_id: int
    url: str | None = Field(
        default=None,
        description="The run's page, built by DARA from the workspace host and the ids "
        "(never taken from a step's result); null when the host is not http(s).",
    )
    state: str | None = Field(
        default=None,
        description="How the Databricks run ended (SUCCESS, FAILED, CANCELED, ...), as its run "
        "watcher recorded it; null while it is watched, or for a run nobody watched.",
    )
    life_cycle_state: str | None = Field(
        default=None,
        description="While it is watched: its life cycle state (QUEUED, PENDING, RUNNING, ...) in the "
        "workspace's last listing of active runs, up to DARA_WATCH_INTERVAL old; null when this "
        "worker has no recent listing showing it.",
    )
    repairable_until: datetime | None = Field(
        default=None,
        description="It ended FAILED or TIMEDOUT and `POST /runs/{id}/repair` may rerun its failed "
        "tasks until then (DARA_REPAIR_WINDOW); null otherwise.",
    )


class Queued(BaseModel):
    """Why a run in flight is not working but waiting for room: DARA trying again to start
    something the workspace refused for capacity, or a Databricks run the workspace holds."""

    source: Literal["capacity", "workspace"] = Field(
        description="`capacity`: the workspace refused a step for capacity (full run queue, 429, "
        "RESOURCE_EXHAUSTED) and DARA tries again until the run's deadline; `workspace`: a "
        "Databricks run is QUEUED or PENDING in the workspace."
    )
    reason: str = Field(description="The workspace's message.")
    step_id: str | None = Field(default=None, description="`capacity`: the step being tried again.")
    step: str | None = Field(default=None, description="`capacity`: its name.")
    attempts: int | None = Field(default=None, description="`capacity`: tries refused so far.")
    since: datetime | None = Field(default=None, description="`capacity`: when the first was refused.")
    next_attempt_at: datetime | None = Field(default=None, description="`capacity`: when it is tried next.")
    databricks_run_id: int | None = Field(default=None, description="`workspace`: the Databricks run.")
    life_cycle_state: str | None = Field(default=None, description="`workspace`: QUEUED or PENDING.")


class StepView(BaseModel):
    id: str
    name: str | None
    kind: StepKind
    state: str
    started_at: datetime
    finished_at: datetime | None = None
    result: Any = None
    result_is_run_result: bool = Field(
        default=False,
        description="True when this step's result is the run's own `result` (a pipeline that "
        "returns what a callback sent): it is shown there, once, and `result` here is null.",
    )
    error: str | None = None


class Progress(BaseModel):
    done: int
    seen: int


class RunView(BaseModel):
    id: str
    pipeline: str
    status: RunStatus
    started_by: str = Field(description="Who started the run; they and DARA_ADMINS may cancel it.")
    incarnation: str = Field(description="Unique to this creation of the run id; callback tokens are bound to it.")
    params: dict[str, Any]
    progress: Progress = Field(description="Steps and waits settled, of those started so far.")
    started_at: datetime
    finished_at: datetime | None = None
    elapsed_seconds: float
    deadline: datetime
    result: Any = None
    error: str | None = None
    steps: list[StepView] = []
    databricks_runs: list[DatabricksRun] = []
    queued: Queued | None = Field(
        default=None,
        description="Set while the run waits for room in the workspace rather than for work; "
        "its status stays `running` or `waiting`. Null otherwise.",
    )
    repairable_until: datetime | None = Field(
        default=None,
        description="Until when `POST /runs/{id}/repair` may rerun the failed tasks of a Databricks "
        "run it waits for (the latest of its Databricks runs' `repairable_until`); null if none may be.",
    )


class RunSummary(BaseModel):
    """What ``GET /run`` (the original example's form) answers."""

    id: str
    pipeline: str
    status: RunStatus
    result: Any = None
    error: str | None = None

    @classmethod
    def of(cls, run: RunView) -> RunSummary:
        return cls(id=run.id, pipeline=run.pipeline, status=run.status, result=run.result, error=run.error)


#: Longest error a listed run shows; GET /runs/{id} has the whole of it.
ERROR_SUMMARY_CHARS = 300


class RunListItem(BaseModel):
    """A run as ``GET /runs`` lists it: what it is and how far it got, never its values.

    Results, parameters and step results can each be as large as a callback may send;
    a page of fifty runs must not carry fifty of them. ``GET /runs/{id}`` has them.
    """

    id: str
    pipeline: str
    status: RunStatus
    started_by: str
    progress: Progress = Field(description="Steps and waits settled, of those started so far.")
    started_at: datetime
    finished_at: datetime | None = None
    elapsed_seconds: float
    deadline: datetime
    error: str | None = Field(
        default=None, description="The first line of the run's error, cut short; GET /runs/{id} has all of it."
    )

    @classmethod
    def of(cls, run: RunView) -> RunListItem:
        return cls(
            id=run.id,
            pipeline=run.pipeline,
            status=run.status,
            started_by=run.started_by,
            progress=run.progress,
            started_at=run.started_at,
            finished_at=run.finished_at,
            elapsed_seconds=run.elapsed_seconds,
            deadline=run.deadline,
            error=error_summary(run.error),
        )


def error_summary(error: str | None) -> str | None:
    """The first line of ``error``, at most ERROR_SUMMARY_CHARS long (a cut ends in "...")."""
    if error is None:
        return None
    line = error.strip().split("\n", 1)[0]
    return line if len(line) <= ERROR_SUMMARY_CHARS else line[: ERROR_SUMMARY_CHARS - 3] + "..."


class RunPage(BaseModel):
    runs: list[RunListItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


async def read_run(
    resonate: Resonate,
    run_id: str,
    *,
    with_steps: bool = True,
    workspace_host: str | None = None,
    root: PromiseRecord | None = None,
) -> RunView | None:
    """The run ``run_id`` with every step so far, or None if there is no such run.

    ``with_steps=False`` reads the root promise alone: one request instead of one per step.
    ``workspace_host`` is where links to the run's Databricks runs point. Each value is
    in the view once: a step whose result the run returned is marked, not repeated.
    ``root``: the run's root promise, already in hand (a start's create reply): not read.
    """
    root = root if root is not None else await get_promise(resonate, run_id)
    if root is None or not is_run(root):
        return None
    steps: list[StepView] = []
    while with_steps and (child := await _child(resonate, resonate_format.child_id(run_id, len(steps) + 1))):
        steps.append(_step(child))
    status = _STATUS[root.state]
    if status == "running" and _only_waits_pending(steps):
        status = "waiting"
    result, error = _outcome(root)
    if status == "failed" and error is not None and error.startswith(TIMED_OUT):
        status = "timed_out"
    call = resonate_format.stored_call(root)
    assert call is not None  # is_run checked it
    meta = run_meta(root)
    work = [step for step in steps if step.kind != "watcher"]
    # Read before the results they come from are shown only once, below.
    databricks_runs = [
        run for step in steps if step.kind == "step" and (run := _databricks_run(step.result, workspace_host))
    ]
    _add_final_states(databricks_runs, steps)
    queued, repairable = None, None
    if root.state == "pending":
        queued = await _capacity_wait(resonate, steps)
        repairable = await _add_repair_windows(resonate, run_id, databricks_runs)
    if root.state == "resolved" and result is not None:
        _show_once(steps, result)
    return RunView(
        id=run_id,
        pipeline=call.func,
        status=status,
        started_by=meta.started_by,
        incarnation=meta.incarnation,
        params=_params(call),
        progress=Progress(done=sum(step.state != "pending" for step in work), seen=len(work)),
        started_at=_time(root.created_at),
        finished_at=_time(root.settled_at) if root.settled_at else None,
        elapsed_seconds=((root.settled_at or now_ms()) - root.created_at) / 1000,
        deadline=_time(root.timeout_at),
        result=result,
        error=error,
        steps=steps,
        databricks_runs=databricks_runs,
        queued=queued,
        repairable_until=repairable,
    )


def _show_once(steps: list[StepView], result: Any) -> None:
    """Mark the steps whose result is the run's ``result`` instead of repeating it.

    A pipeline that returns what its callback sent is the usual case: without this,
    the largest value of a run -- the notebook's -- was served twice by every read.
    The type check keeps JSON apart where Python does not (``1 == True``).
    """
    for step in steps:
        if step.state == "resolved" and type(step.result) is type(result) and step.result == result:
            step.result, step.result_is_run_result = None, True


async def _child(resonate: Resonate, child_id: str) -> PromiseRecord | None:
    """The promise at a child position: a step, a promise, or a detached watcher (which
    takes its position but is stored under another id)."""
    record = await get_promise(resonate, child_id)
    if record is None:
        record = await get_promise(resonate, resonate_format.detached_id(child_id))
    return record


def _only_waits_pending(steps: list[StepView]) -> bool:
    """Suspended, as far as promises can tell: a wait or a sleep pending, and no step or
    call running. (A pending watcher says neither: it outlives the wait it watches.)"""
    pending = {step.kind for step in steps if step.state == "pending"}
    return bool(pending & {"callback", "sleep"}) and not pending & {"step", "call"}


def is_run(root: PromiseRecord) -> bool:
    """Whether ``root`` is a run: a root promise that holds a pipeline's call."""
    return resonate_format.is_root(root) and resonate_format.stored_call(root) is not None


def _params(call: resonate_format.StoredCall) -> dict[str, Any]:
    kwargs = {name: value for name, value in call.kwargs.items() if name != RUN_META}
    return {**{f"arg{i}": value for i, value in enumerate(call.args)}, **kwargs}


#: What each SDK operation is to a user; a call whose function is DARA's own is a watcher.
_KIND: dict[resonate_format.MadeBy, StepKind] = {
    "sleep": "sleep",
    "promise": "callback",
    "run": "step",
    "call": "call",
}


def promise_kind(record: PromiseRecord) -> StepKind:
    """What a child promise of a run is: only a ``callback`` is settled from outside."""
    call = resonate_format.stored_call(record)
    if call is not None and isinstance(call.func, str) and call.func.startswith("dara."):
        return "watcher"
    return _KIND[resonate_format.made_by(record)]


def _step(record: PromiseRecord) -> StepView:
    kind = promise_kind(record)
    call = resonate_format.stored_call(record)
    name = call.func if call is not None else None
    result, error = _outcome(record)
    if isinstance(result, dict) and set(result) == {"step", "result"}:
        name, result = result["step"], result["result"]
    elif error is not None and kind == "step":
        name = error.partition(":")[0]
    elif kind == "callback":
        name = "callback"
    return StepView(
        id=record.id,
        name=name,
        kind=kind,
        state=record.state,
        started_at=_time(record.created_at),
        finished_at=_time(record.settled_at) if record.settled_at else None,
        result=result,
        error=error,
    )


def _outcome(record: PromiseRecord) -> tuple[Any, str | None]:
    """(result, error) of a settled promise; (None, None) while pending."""
    data = record.value.data
    match record.state:
        case "resolved":
            return data, None
        case "rejected":
            return None, resonate_format.error_message(data)
        case "rejected_canceled":
            return None, "cancelled"
        case "rejected_timedout":
            return None, "deadline reached before it finished"
    return None, None


def run_meta(root: PromiseRecord) -> RunMeta:
    """What DARA recorded about the run whose root promise this is (``is_run(root)``)."""
    call = resonate_format.stored_call(root)
    assert call is not None, f"{root.id} holds no call: not a run"
    return RunMeta.of(call.kwargs.get(RUN_META))


def _databricks_run(result: Any, workspace_host: str | None) -> DatabricksRun | None:
    """A Databricks run a step started (steps return ``{job_id, run_id, url}``), or None.

    Only the ids are taken from the result; the link is rebuilt from the workspace
    host, so no value recorded in a run -- a step's, let alone a notebook's -- can
    make DARA's pages link to a ``javascript:`` URL or to another site.
    """
    if not (isinstance(result, dict) and isinstance(result.get("run_id"), int) and "url" in result):
        return None
    job_id = result.get("job_id") if isinstance(result.get("job_id"), int) else None
    return DatabricksRun(job_id=job_id, run_id=result["run_id"], url=run_link(workspace_host, job_id, result["run_id"]))


#: A Databricks run state as the watcher records it (``SUCCESS``, ``INTERNAL_ERROR``, ...).
_RUN_STATE = re.compile(r"^[A-Z_]{1,40}$")


def _add_final_states(runs: list[DatabricksRun], steps: list[StepView]) -> None:
    """Each Databricks run's final state, from the result of the watcher that saw it end
    (app.watchers: ``{run_id, state, ...}``)."""
    ended = {
        step.result["run_id"]: step.result["state"]
        for step in steps
        if step.kind == "watcher"
        and isinstance(step.result, dict)
        and isinstance(step.result.get("run_id"), int)
        and isinstance(step.result.get("state"), str)
        and _RUN_STATE.match(step.result["state"])
    }
    for run in runs:
        run.state = ended.get(run.run_id)


async def _capacity_wait(resonate: Resonate, steps: list[StepView]) -> Queued | None:
    """The run is queued if a step of it is waiting for room (app.durable.capacity_waits):
    one read per pending step, which only steps in flight are."""
    for step in steps:
        if (
            step.kind == "step"
            and step.state == "pending"
            and (wait := await capacity_waits.current(resonate, step.id))
        ):
            return Queued(
                source="capacity",
                reason=wait.reason,
                step_id=step.id,
                step=wait.step,
                attempts=wait.attempts,
                since=_time(wait.since_ms),
                next_attempt_at=_time(wait.next_attempt_ms),
            )
    return None


#: Life cycle states in which the workspace holds a run before it runs.
WORKSPACE_QUEUED = ("QUEUED", "PENDING")


def add_listed_states(run: RunView, listed: Callable[[int], ListedState | None]) -> None:
    """Each watched Databricks run's life cycle state as ``listed`` (the worker's last
    listing of active runs, app.active_runs) shows it; one QUEUED or PENDING there makes
    the run queued, unless a step of it already waits for room."""
    if run.status not in ("running", "waiting"):
        return
    for databricks in run.databricks_runs:
        shown = listed(databricks.run_id) if databricks.state is None else None
        if shown is None or not shown.life_cycle_state:
            continue
        databricks.life_cycle_state = shown.life_cycle_state
        if run.queued is None and shown.life_cycle_state in WORKSPACE_QUEUED:
            run.queued = Queued(
                source="workspace",
                reason=shown.message
                or f"the workspace holds Databricks run {databricks.run_id} {shown.life_cycle_state}",
                databricks_run_id=databricks.run_id,
                life_cycle_state=shown.life_cycle_state,
            )


async def _add_repair_windows(resonate: Resonate, run_id: str, runs: list[DatabricksRun]) -> datetime | None:
    """Each watched Databricks run's repair window, as its watcher noted it (app.repair_windows);
    the latest, for the run."""
    for run in runs:
        if run.state is None and (until := await repair_windows.repairable_until(resonate, run_id, run.run_id)):
            run.repairable_until = _time(until)
    return max((run.repairable_until for run in runs if run.repairable_until), default=None)


#: Where DARA shows the embedded workspace's runs: ``{this}/jobs/{job}/runs/{run}``.
EMBEDDED_RUNS_PAGES = "/ui/databricks"


def links_host(settings: Settings, workspace_host: str | None) -> str:
    """The host links to Databricks runs are built on: the workspace's -- except the
    embedded workspace, which has no UI and a new port at every start, whose runs DARA
    shows on pages of its own (app.routers.console_databricks)."""
    if settings.uses_embedded_workspace:
        return f"{settings.callback_base_url}{EMBEDDED_RUNS_PAGES}"
    return workspace_host or ""


def run_link(workspace_host: str | None, job_id: int | None, run_id: int) -> str | None:
    """The Databricks page of a run, if the host is an http(s) URL."""
    host = (workspace_host or "").rstrip("/")
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    return f"{host}/jobs/{job_id}/runs/{run_id}" if job_id is not None else f"{host}/#job/runs/{run_id}"


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
