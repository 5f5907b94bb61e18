"""A run as users see it, read from Resonate's promises and nothing else.

A run is its root promise (id = run id, param = the pipeline and its arguments, value
= its result or error) plus one child promise per durable operation, ``<id>:1``,
``<id>:2``, ... in call order. Reading them back is all a status view needs, so there
is no task store to keep in step with them: ``GET /runs/{id}`` and ``resonate tree``
can never disagree.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from resonate.resonate import Resonate
from resonate.error import ServerError
from resonate.timing import now_ms
from resonate.types import PromiseRecord

from app.durable.errors import TIMED_OUT
from app.durable.run_index import RunIndex
from app.durable.run_meta import RUN_META, RunMeta

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


class StepView(BaseModel):
    id: str
    name: str | None
    kind: StepKind
    state: str
    started_at: datetime
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None


class Progress(BaseModel):
    done: int
    seen: int


class RunView(BaseModel):
    id: str
    pipeline: str
    status: RunStatus
    started_by: str = Field(description="Who started the run; they and DARA_ADMINS may cancel it.")
    incarnation: str = Field(
        description="Unique to this creation of the run id; callback tokens are bound to it."
    )
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


class RunPage(BaseModel):
    runs: list[RunView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


async def list_runs(
    resonate: Resonate,
    index: RunIndex,
    *,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: int = 20,
    cursor: str | None = None,
    workspace_host: str | None = None,
) -> RunPage:
    """Runs, newest first, filtered by pipeline and status, a page at a time.

    ``index`` lists root promises for the backend (app.durable.run_index); only those
    that carry a pipeline call are runs. Raises ValueError for a cursor it did not issue.
    """

    def wanted(run: RunView | None) -> bool:
        return run is not None and pipeline in (None, run.pipeline) and status in (None, run.status)

    runs: list[RunView] = []
    position = cursor
    while True:
        ids, position = await index.page(position, limit - len(runs))  # never more than asked
        for run_id in ids:
            if wanted(run := await read_run(resonate, run_id, workspace_host=workspace_host)):
                runs.append(run)  # type: ignore[arg-type]
        if len(runs) >= limit or position is None:
            return RunPage(runs=runs, next_cursor=position)


async def get_promise(resonate: Resonate, id: str) -> PromiseRecord | None:
    try:
        return await resonate.promises.get(id)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise


async def read_run(
    resonate: Resonate, run_id: str, *, with_steps: bool = True, workspace_host: str | None = None
) -> RunView | None:
    """The run ``run_id`` with every step so far, or None if there is no such run.

    ``with_steps=False`` reads the root promise alone: one request instead of one per step.
    ``workspace_host`` is where links to the run's Databricks runs point.
    """
    root = await get_promise(resonate, run_id)
    if root is None or not is_run(root):
        return None
    steps: list[StepView] = []
    while with_steps and (child := await _child(resonate, f"{run_id}:{len(steps) + 1}", run_id)) is not None:
        steps.append(_step(child))
    status = _STATUS[root.state]
    if status == "running" and _only_waits_pending(steps):
        status = "waiting"
    result, error = _outcome(root)
    if status == "failed" and error is not None and error.startswith(TIMED_OUT):
        status = "timed_out"
    task = root.param.data or {}
    meta = run_meta(root)
    work = [step for step in steps if step.kind != "watcher"]
    return RunView(
        id=run_id,
        pipeline=task.get("func", "?"),
        status=status,
        started_by=meta.started_by,
        incarnation=meta.incarnation,
        params=_params(task),
        progress=Progress(done=sum(step.state != "pending" for step in work), seen=len(work)),
        started_at=_time(root.created_at),
        finished_at=_time(root.settled_at) if root.settled_at else None,
        elapsed_seconds=((root.settled_at or now_ms()) - root.created_at) / 1000,
        deadline=_time(root.timeout_at),
        result=result,
        error=error,
        steps=steps,
        databricks_runs=[
            run for step in steps if step.kind == "step" and (run := _databricks_run(step.result, workspace_host))
        ],
    )


async def _child(resonate: Resonate, child_id: str, run_id: str) -> PromiseRecord | None:
    """The promise at a child position: a step, a promise, or a detached watcher.

    A detached call takes its position's id but is stored under
    ``<run>:d<blake2b-8(<run>:<n>)>`` (resonate-sdk's ``Context.detached``).
    """
    record = await get_promise(resonate, child_id)
    if record is None:
        digest = hashlib.blake2b(child_id.encode(), digest_size=8).hexdigest()
        record = await get_promise(resonate, f"{run_id}:d{digest}")
    return record


def _only_waits_pending(steps: list[StepView]) -> bool:
    """Suspended, as far as promises can tell: nothing running, something awaited."""
    pending = {step.kind for step in steps if step.state == "pending"} - {"watcher"}
    return bool(pending) and not pending & {"step", "call"}


def is_run(root: PromiseRecord) -> bool:
    data = root.param.data
    return root.tags.get("resonate:origin") == root.id and isinstance(data, dict) and "func" in data


def _params(task: dict[str, Any]) -> dict[str, Any]:
    args, kwargs = task.get("args") or [], task.get("kwargs") or {}
    kwargs = {name: value for name, value in kwargs.items() if name != RUN_META}
    return {**{f"arg{i}": value for i, value in enumerate(args)}, **kwargs}


def promise_kind(record: PromiseRecord) -> StepKind:
    """What a child promise of a run is: only a ``callback`` is settled from outside."""
    tags = record.tags
    func = record.param.data.get("func") if isinstance(record.param.data, dict) else None
    if isinstance(func, str) and func.startswith("dara."):
        return "watcher"
    if tags.get("resonate:timer") == "true":
        return "sleep"
    if tags.get("resonate:external") == "true":
        return "callback"
    if tags.get("resonate:scope") == "local":
        return "step"
    return "call"


def _step(record: PromiseRecord) -> StepView:
    kind = promise_kind(record)
    name = record.param.data.get("func") if isinstance(record.param.data, dict) else None
    result, error = _outcome(record)
    if isinstance(result, dict) and set(result) == {"step", "result"}:
        name, result = result["step"], result["result"]
    elif error is not None and kind == "step":
        name = error.split(":", 1)[0]
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
            message = data.get("message") if isinstance(data, dict) else None
            return None, message if isinstance(message, str) else str(data)
        case "rejected_canceled":
            return None, "cancelled"
        case "rejected_timedout":
            return None, "deadline reached before it finished"
    return None, None


def run_meta(root: PromiseRecord) -> RunMeta:
    """What DARA recorded about the run whose root promise this is."""
    task = root.param.data if isinstance(root.param.data, dict) else {}
    return RunMeta.of((task.get("kwargs") or {}).get(RUN_META))


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


def run_link(workspace_host: str | None, job_id: int | None, run_id: int) -> str | None:
    """The Databricks page of a run, if the host is an http(s) URL."""
    host = (workspace_host or "").rstrip("/")
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return None
    return f"{host}/jobs/{job_id}/runs/{run_id}" if job_id is not None else f"{host}/#job/runs/{run_id}"


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
