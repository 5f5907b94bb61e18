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
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from resonate.connections import LocalConnection
from resonate.resonate import Resonate
from resonate.error import ServerError
from resonate.timing import now_ms
from resonate.types import PromiseRecord

from app.durable.errors import TIMED_OUT

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
    url: str


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
    local: LocalConnection | None,
    *,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> RunPage:
    """Runs, newest first, filtered by pipeline and status, a page at a time.

    The in-process server cannot search, so its promises are read directly; a Resonate
    server or Postgres is asked with ``promise.search``. Either way only root promises
    that carry a pipeline call are runs. Raises ValueError for a cursor it did not issue.
    """

    def wanted(run: RunView | None) -> bool:
        return run is not None and pipeline in (None, run.pipeline) and status in (None, run.status)

    runs: list[RunView] = []
    if local is not None:
        if cursor is not None and not cursor.isdigit():
            raise ValueError(f"cursor {cursor!r} is not one this server issued")
        roots = sorted(
            (p for p in local.state.promises.values() if ":" not in p.id),
            key=lambda p: (p.created_at, p.id),
            reverse=True,
        )
        index = int(cursor or 0)
        while index < len(roots) and len(runs) < limit:
            run = await read_run(resonate, roots[index].id)
            index += 1
            if wanted(run):
                runs.append(run)  # type: ignore[arg-type]
        return RunPage(runs=runs, next_cursor=str(index) if index < len(roots) else None)
    position = cursor
    while True:
        found = await resonate.promises.search(None, {"resonate:scope": "global"}, limit, position)
        for record in found.promises:
            if ":" not in record.id and wanted(run := await read_run(resonate, record.id)):
                runs.append(run)  # type: ignore[arg-type]
        position = found.cursor
        if len(runs) >= limit or position is None:
            return RunPage(runs=runs, next_cursor=position)


async def get_promise(resonate: Resonate, id: str) -> PromiseRecord | None:
    try:
        return await resonate.promises.get(id)
    except ServerError as exc:
        if exc.code == 404:
            return None
        raise


async def read_run(resonate: Resonate, run_id: str, *, with_steps: bool = True) -> RunView | None:
    """The run ``run_id`` with every step so far, or None if there is no such run.

    ``with_steps=False`` reads the root promise alone: one request instead of one per step.
    """
    root = await get_promise(resonate, run_id)
    if root is None or not _is_run(root):
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
    work = [step for step in steps if step.kind != "watcher"]
    return RunView(
        id=run_id,
        pipeline=task.get("func", "?"),
        status=status,
        params=_params(task),
        progress=Progress(done=sum(step.state != "pending" for step in work), seen=len(work)),
        started_at=_time(root.created_at),
        finished_at=_time(root.settled_at) if root.settled_at else None,
        elapsed_seconds=((root.settled_at or now_ms()) - root.created_at) / 1000,
        deadline=_time(root.timeout_at),
        result=result,
        error=error,
        steps=steps,
        databricks_runs=[run for step in steps if (run := _databricks_run(step.result))],
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


def _is_run(root: PromiseRecord) -> bool:
    data = root.param.data
    return root.tags.get("resonate:origin") == root.id and isinstance(data, dict) and "func" in data


def _params(task: dict[str, Any]) -> dict[str, Any]:
    args, kwargs = task.get("args") or [], task.get("kwargs") or {}
    return {**{f"arg{i}": value for i, value in enumerate(args)}, **kwargs}


def _step(record: PromiseRecord) -> StepView:
    tags = record.tags
    if tags.get("resonate:timer") == "true":
        kind: StepKind = "sleep"
    elif tags.get("resonate:external") == "true":
        kind = "callback"
    elif tags.get("resonate:scope") == "local":
        kind = "step"
    else:
        kind = "call"
    name = None
    if isinstance(record.param.data, dict):
        name = record.param.data.get("func")
        if isinstance(name, str) and name.startswith("dara."):
            kind = "watcher"
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


def _databricks_run(result: Any) -> DatabricksRun | None:
    if isinstance(result, dict) and isinstance(result.get("run_id"), int) and "url" in result:
        return DatabricksRun.model_validate(result)
    return None


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
