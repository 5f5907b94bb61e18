"""Run a SQL query, hand its rows to a job, wait for the job's notebook to call back."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from app.durable import Context, pipeline
from pipelines.job_callback import run_job_and_wait
from steps.notify import notify
from steps.sql import run_sql


@pipeline
def sql_then_job(
    ctx: Context,
    warehouse_id: str,
    statement: str,
    job: str,
    param: str = "rows",
) -> Generator[Any, Any, Any]:
    """Run a query on a SQL warehouse, pass its rows to a job that calls back, notify.

    The notebook parameter `param` holds the rows as JSON text: a list of rows, each a
    list of values in the query's column order. Job parameters are small (a few KB),
    so the query should aggregate or LIMIT; bigger results belong in a table.
    """
    result = yield from ctx.run(run_sql, warehouse_id, statement)
    run, value = yield from run_job_and_wait(ctx, job, {param: json.dumps(result.rows)})
    details = {"run": run.url, "rows": result.row_count, "value": value}
    yield ctx.run(notify, f"{job} finished on {result.row_count} rows: run {run.run_id}", details)
    return value
