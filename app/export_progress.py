"""How far an export run got, read from the run itself: one step per item, so items
done of the total, each item's measured time, and an estimate of the rest from them.

Nothing is stored for this: a run's steps carry their start and finish times, and its
parameters the items in the order the pipeline exports them (active jobs, then active
pipelines), so this view survives every restart the run does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.services.run_status import RunStatus, RunView, StepView

ITEM_STEPS = ("export_job", "export_pipeline")
EXPORT_PIPELINE = "export_workflows"

ItemState = Literal["queued", "running", "done", "failed", "cancelled"]


class ItemProgress(BaseModel):
    kind: Literal["job", "pipeline"]
    id: str
    name: str
    export_libraries: bool
    state: ItemState
    seconds: float | None = Field(default=None, description="How long its export took (or has taken so far).")
    folder: str | None = None
    files: list[str] = []
    skipped: list[str] = []
    error: str | None = None


class ExportProgress(BaseModel):
    run_id: str
    status: RunStatus
    start_path: str
    total: int
    done: int
    failed: int
    items: list[ItemProgress]
    mean_item_seconds: float | None = Field(description="Mean time of the items finished so far.")
    remaining_seconds: float | None = Field(description="Estimate: the mean item time times the items left.")
    elapsed_seconds: float
    started_at: datetime
    finished_at: datetime | None


def export_progress(run: RunView, now: datetime) -> ExportProgress:
    """Raises ValueError if ``run`` is not an export."""
    if run.pipeline != EXPORT_PIPELINE:
        raise ValueError(f"run {run.id!r} is a {run.pipeline} run, not an export")
    planned = _planned(run.params)
    steps = [step for step in run.steps if step.kind == "step" and step.name in ITEM_STEPS]
    items = [_item(plan, steps[index] if index < len(steps) else None, run, now) for index, plan in enumerate(planned)]
    finished = [item.seconds for item in items if item.state in ("done", "failed") and item.seconds is not None]
    mean = sum(finished) / len(finished) if finished else None
    left = [item for item in items if item.state in ("queued", "running")]
    remaining = None
    if mean is not None and run.status in ("running", "waiting"):
        running = sum(min(item.seconds or 0.0, mean) for item in left if item.state == "running")
        remaining = max(mean * len(left) - running, 0.0)
    return ExportProgress(
        run_id=run.id,
        status=run.status,
        start_path=str((run.params.get("initial_variables") or {}).get("v_start_path", "")),
        total=len(items),
        done=sum(item.state == "done" for item in items),
        failed=sum(item.state == "failed" for item in items),
        items=items,
        mean_item_seconds=mean,
        remaining_seconds=remaining,
        elapsed_seconds=run.elapsed_seconds,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


#: Each kind of item, in the order the pipeline exports them: (kind, the parameter
#: listing them, an item's id field, its name field).
_ITEM_KINDS = (
    ("job", "workflows", "job_id", "job_name"),
    ("pipeline", "pipelines", "pipeline_id", "pipeline_name"),
)


def _planned(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "kind": kind,
            "id": str(item.get(id_field)),
            "name": item.get(name_field, ""),
            "export_libraries": bool(item.get("export_libraries")),
        }
        for kind, listed_in, id_field, name_field in _ITEM_KINDS
        for item in params.get(listed_in) or []
        if isinstance(item, dict) and item.get("is_active", True)
    ]


def _item(plan: dict[str, Any], step: StepView | None, run: RunView, now: datetime) -> ItemProgress:
    if step is None:
        state: ItemState = "cancelled" if run.status in ("cancelled", "failed", "timed_out") else "queued"
        return ItemProgress(**plan, state=state)
    end = step.finished_at or (run.finished_at if run.finished_at else now)
    seconds = max((end - step.started_at).total_seconds(), 0.0)
    if step.state == "pending":
        return ItemProgress(
            **plan, state="running" if run.status in ("running", "waiting") else "cancelled", seconds=seconds
        )
    if step.state != "resolved":
        return ItemProgress(**plan, state="failed", seconds=seconds, error=step.error)
    result = step.result if isinstance(step.result, dict) else {}
    return ItemProgress(
        **plan,
        state="done",
        seconds=seconds,
        folder=result.get("folder"),
        files=[f for f in result.get("files") or [] if isinstance(f, str)],
        skipped=[s for s in result.get("skipped") or [] if isinstance(s, str)],
    )
