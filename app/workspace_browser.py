"""The workspace's jobs and Lakeflow pipelines as the console browses them: fuzzy
search, filters, and pages, read through databricks-sdk's paginated listings
(``jobs.list``, ``pipelines.list_pipelines``), and one item's details.

Paging is stateless: a page's ``cursor`` is how many matching items came before it.
Without a search the listing is read only as far as the page needs; a search ranks
every match by how well it matches, so it reads the listing through (up to
``MAX_SCANNED`` items) and pages the ranking.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs, pipelines
from pydantic import BaseModel, Field
from rapidfuzz import fuzz, utils

from steps.jobs import run_state
from steps.workspace_items import library_paths, pipeline_library_path, task_target

#: Most items a search reads from the workspace's listing.
MAX_SCANNED = 5000
#: Lowest rapidfuzz partial-ratio (0-100) that counts as a match: typos and word
#: fragments match, unrelated names do not.
MATCH_SCORE = 70
#: Items asked of the workspace per request while reading its listings (the API's most).
LIST_PAGE_SIZE = 100
#: Runs shown in a job's details.
LAST_RUNS = 5

Schedule = Literal["any", "scheduled", "unscheduled"]


class JobRow(BaseModel):
    kind: Literal["job"] = "job"
    id: str = Field(description="The job id, as text (the same field as a pipeline's).")
    name: str
    creator: str | None
    schedule: str | None = Field(description="Quartz cron expression and time zone; null if none.")
    paused: bool
    tags: dict[str, str] = {}


class PipelineRow(BaseModel):
    kind: Literal["pipeline"] = "pipeline"
    id: str
    name: str
    creator: str | None
    state: str | None


class Page[R](BaseModel):
    items: list[R]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; null at the end.")
    cursor: int
    scanned: int = Field(description="Items of the workspace's listing read for this page.")


class TaskInfo(BaseModel):
    key: str
    kind: str
    target: str | None = Field(description="The notebook, file, pipeline or job the task runs.")
    depends_on: list[str] = []
    libraries: list[str] = []


class RunInfo(BaseModel):
    run_id: int
    state: str
    started: datetime | None
    link: str = Field(description="DARA's page of the run (state, output and error of each task).")


class JobDetail(JobRow):
    tasks: list[TaskInfo] = []
    last_runs: list[RunInfo] = []


class PipelineDetail(PipelineRow):
    catalog: str | None = None
    target: str | None = None
    continuous: bool = False
    development: bool = False
    libraries: list[str] = []
    last_modified: datetime | None = None


@dataclass(frozen=True)
class JobFilter:
    query: str = ""
    creator: str = ""
    schedule: Schedule = "any"
    tag: str = ""


@dataclass(frozen=True)
class PipelineFilter:
    query: str = ""
    creator: str = ""
    state: str = ""


def list_jobs(w: WorkspaceClient, wanted: JobFilter, cursor: int, limit: int) -> Page[JobRow]:
    rows = (_job_row(job) for job in w.jobs.list(limit=LIST_PAGE_SIZE))
    items, next_cursor, scanned = _page(rows, _job_filter(wanted), wanted.query, cursor, limit)
    return Page[JobRow](items=items, next_cursor=next_cursor, cursor=cursor, scanned=scanned)


def list_pipelines(w: WorkspaceClient, wanted: PipelineFilter, cursor: int, limit: int) -> Page[PipelineRow]:
    rows = (_pipeline_row(p) for p in w.pipelines.list_pipelines(max_results=LIST_PAGE_SIZE))

    def keep(row: PipelineRow) -> bool:
        return (not wanted.creator or (row.creator or "").lower() == wanted.creator.lower()) and (
            not wanted.state or (row.state or "").upper() == wanted.state.upper()
        )

    items, next_cursor, scanned = _page(rows, keep, wanted.query, cursor, limit)
    return Page[PipelineRow](items=items, next_cursor=next_cursor, cursor=cursor, scanned=scanned)


def job_detail(w: WorkspaceClient, job_id: int) -> JobDetail:
    """Raises databricks.sdk.errors.NotFound for an unknown job."""
    job = w.jobs.get(job_id)
    row = _job_row(job)
    settings = job.settings or jobs.JobSettings()
    runs = sorted(itertools.islice(w.jobs.list_runs(job_id=job_id, limit=LAST_RUNS), LAST_RUNS * 5), key=_newest)
    return JobDetail(
        **row.model_dump(exclude={"kind"}),
        tasks=[_task(task) for task in settings.tasks or []],
        last_runs=[_run(run) for run in runs[:LAST_RUNS]],
    )


def pipeline_detail(w: WorkspaceClient, pipeline_id: str) -> PipelineDetail:
    """Raises databricks.sdk.errors.NotFound for an unknown pipeline."""
    found = w.pipelines.get(pipeline_id)
    spec = found.spec or pipelines.PipelineSpec()
    return PipelineDetail(
        id=found.pipeline_id or pipeline_id,
        name=found.name or spec.name or "",
        creator=found.creator_user_name,
        state=found.state.value if found.state else None,
        catalog=spec.catalog,
        target=spec.target or spec.schema,
        continuous=bool(spec.continuous),
        development=bool(spec.development),
        libraries=[path for library in spec.libraries or [] if (path := pipeline_library_path(library))],
        last_modified=datetime.fromtimestamp(found.last_modified / 1000, tz=UTC) if found.last_modified else None,
    )


# -- paging --------------------------------------------------------------------------


def _page[R: (JobRow, PipelineRow)](
    rows: Iterator[R], keep: Callable[[R], bool], query: str, cursor: int, limit: int
) -> tuple[list[R], int | None, int]:
    """(the page's items, the next cursor or None, how many listed items were read)."""
    counted = _Counted(rows)
    matching = (row for row in counted if keep(row))
    if query.strip():
        scored = [
            (score, row)
            for row in itertools.islice(matching, MAX_SCANNED)
            if (score := _score(query, row)) >= MATCH_SCORE
        ]
        scored.sort(key=lambda pair: (-pair[0], pair[1].name.lower()))
        ranked = [row for _, row in scored]
        items = ranked[cursor : cursor + limit]
        more = cursor + limit < len(ranked)
    else:
        window = list(itertools.islice(matching, cursor, cursor + limit + 1))  # one more: is there a next page?
        items, more = window[:limit], len(window) > limit
    return items, cursor + limit if more else None, counted.count


def _score(query: str, row: Any) -> float:
    if query.strip() == row.id:
        return 100.0
    return fuzz.partial_ratio(query, row.name, processor=utils.default_process)


@dataclass
class _Counted:
    """An iterator that counts what it yielded (how much of a listing was read)."""

    inner: Iterator[Any]
    count: int = field(default=0)

    def __iter__(self) -> Iterator[Any]:
        for item in self.inner:
            self.count += 1
            yield item


def _job_filter(wanted: JobFilter) -> Callable[[JobRow], bool]:
    key, _, value = wanted.tag.partition("=")

    def keep(row: JobRow) -> bool:
        if wanted.creator and (row.creator or "").lower() != wanted.creator.lower():
            return False
        if wanted.schedule == "scheduled" and row.schedule is None:
            return False
        if wanted.schedule == "unscheduled" and row.schedule is not None:
            return False
        return not (key and (key not in row.tags or (value and row.tags[key] != value)))

    return keep


def _job_row(job: jobs.BaseJob | jobs.Job) -> JobRow:
    settings = job.settings or jobs.JobSettings()
    schedule = settings.schedule
    return JobRow(
        id=str(job.job_id),
        name=settings.name or f"job {job.job_id}",
        creator=job.creator_user_name,
        schedule=f"{schedule.quartz_cron_expression} ({schedule.timezone_id})" if schedule else None,
        paused=bool(schedule and schedule.pause_status == jobs.PauseStatus.PAUSED),
        tags=dict(settings.tags or {}),
    )


def _pipeline_row(found: pipelines.PipelineStateInfo) -> PipelineRow:
    return PipelineRow(
        id=found.pipeline_id or "",
        name=found.name or "",
        creator=found.creator_user_name,
        state=found.state.value if found.state else None,
    )


def _task(task: jobs.Task) -> TaskInfo:
    kind, target = task_target(task)
    return TaskInfo(
        key=task.task_key or "",
        kind=kind,
        target=target,
        depends_on=[d.task_key for d in task.depends_on or [] if d.task_key],
        libraries=library_paths(task.libraries or []),
    )


def _newest(run: jobs.BaseRun) -> tuple[int, int]:
    return -(run.start_time or 0), -(run.run_id or 0)


def _run(run: jobs.BaseRun) -> RunInfo:
    return RunInfo(
        run_id=run.run_id or 0,
        state=run_state(run.state),
        started=datetime.fromtimestamp(run.start_time / 1000, tz=UTC) if run.start_time else None,
        link=f"/ui/databricks/runs/{run.run_id}",
    )
