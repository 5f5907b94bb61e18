"""Run a SQL query, hand its rows to a job, wait for the job's notebook to call back."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from app.durable import Context, pipeline
from steps.jobs import run_job
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
    result = yield ctx.run(run_sql, warehouse_id, statement)
    done = ctx.promise()
    promise_id = yield done.id()
    rows = json.dumps(result.rows)
    run = yield ctx.run(run_job, job, {param: rows}, callback_to=promise_id)
    yield ctx.watch(run, promise_id)  # fails `done` if the run ends without calling back
    value = yield done
    details = {"run": run.url, "rows": result.row_count, "value": value}
    yield ctx.run(notify, f"{job} finished on {result.row_count} rows: run {run.run_id}", details)
    return value
