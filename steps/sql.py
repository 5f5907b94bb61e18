"""Steps that run SQL on a Databricks SQL warehouse."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as dbx
from databricks.sdk.service import sql

from steps.retryable import DATABRICKS, retried

#: JSON_ARRAY results carry every value as a string; these types convert losslessly.
#: DECIMAL stays a string: a float would silently lose its precision.
_INTEGER_TYPES = {"BYTE", "SHORT", "INT", "LONG"}
_FLOAT_TYPES = {"FLOAT", "DOUBLE"}

#: Error codes of a FAILED statement that say "the warehouse, not the SQL": raised as
#: TemporarilyUnavailable, which ``run_sql`` declares transient (steps.retryable).
_TRANSIENT_ERROR_CODES = {
    "TEMPORARILY_UNAVAILABLE",
    "WORKSPACE_TEMPORARILY_UNAVAILABLE",
    "SERVICE_UNDER_MAINTENANCE",
}

Value = str | int | float | bool | None


class StatementFailed(Exception):
    """The warehouse ran the statement and it failed, or it was canceled or closed."""


class StatementTimeout(Exception):
    """The statement outlived the step's ``timeout``; it was canceled.

    Not a ``TimeoutError`` on purpose: ``run_sql`` declares those transient, and running
    a statement that already took too long again would only take too long again.
    """


@dataclass(frozen=True)
class QueryResult:
    """A statement's result set, small enough to be a step's durable value."""

    statement_id: str
    columns: list[str]
    #: The warehouse's ``type_name`` of each column (``LONG``, ``STRING``, ``DECIMAL`` ...).
    column_types: list[str]
    rows: list[list[Value]]
    row_count: int
    #: Whether ``row_limit`` (or the API's inline limit) cut the result short.
    truncated: bool


@retried(DATABRICKS)
def run_sql(
    w: WorkspaceClient,
    warehouse_id: str,
    statement: str,
    parameters: dict[str, Value] | None = None,
    *,
    catalog: str | None = None,
    schema: str | None = None,
    row_limit: int | None = None,
    timeout: float = 600.0,
    wait_timeout: int = 30,
    poll_interval: float = 1.0,
) -> QueryResult:
    """Run ``statement`` on ``warehouse_id`` and return its whole (inline) result.

    ``parameters`` fill ``:name`` markers; ints, floats and bools are sent typed.
    The API waits up to ``wait_timeout`` seconds (0 or 5-50) for the result, then
    this step polls until the statement finishes or ``timeout`` seconds have passed
    since it was submitted -- one Databricks action, so the polling stays in one step.

    The statement API has no idempotency token: a re-executed step runs the
    statement again, so statements should be safe to repeat (MERGE, CREATE OR
    REPLACE, INSERT OVERWRITE, plain reads).
    """
    if wait_timeout != 0 and not 5 <= wait_timeout <= 50:
        msg = f"wait_timeout must be 0 or between 5 and 50 seconds, not {wait_timeout}"
        raise ValueError(msg)
    deadline = time.monotonic() + timeout
    response = w.statement_execution.execute_statement(
        statement=statement,
        warehouse_id=warehouse_id,
        parameters=_statement_parameters(parameters or {}),
        catalog=catalog,
        schema=schema,
        row_limit=row_limit,
        disposition=sql.Disposition.INLINE,
        format=sql.Format.JSON_ARRAY,
        wait_timeout=f"{wait_timeout}s",
        on_wait_timeout=sql.ExecuteStatementRequestOnWaitTimeout.CONTINUE,
    )
    statement_id = response.statement_id
    assert statement_id is not None
    interval = poll_interval
    while not _is_terminal(response):
        if time.monotonic() + interval > deadline:
            _cancel(w, statement_id)
            msg = f"statement {statement_id} did not finish within {timeout:g}s; canceled it"
            raise StatementTimeout(msg)
        time.sleep(interval)
        interval = min(interval * 2, 10.0)
        response = w.statement_execution.get_statement(statement_id)
    _raise_unless_succeeded(response)
    return _result(w, response)


def _statement_parameters(parameters: dict[str, Value]) -> list[sql.StatementParameterListItem]:
    return [_statement_parameter(name, value) for name, value in parameters.items()]


def _statement_parameter(name: str, value: Value) -> sql.StatementParameterListItem:
    item = sql.StatementParameterListItem
    if value is None:
        return item(name=name)
    if isinstance(value, bool):  # before int: a bool is an int
        return item(name=name, type="BOOLEAN", value=str(value).lower())
    if isinstance(value, int):
        return item(name=name, type="BIGINT", value=str(value))
    if isinstance(value, float):
        return item(name=name, type="DOUBLE", value=repr(value))
    return item(name=name, value=value)


def _is_terminal(response: sql.StatementResponse) -> bool:
    state = response.status.state if response.status else None
    return state not in (sql.StatementState.PENDING, sql.StatementState.RUNNING)


def _raise_unless_succeeded(response: sql.StatementResponse) -> None:
    status = response.status
    state = status.state if status else None
    if state == sql.StatementState.SUCCEEDED:
        return
    error = status.error if status else None
    code = error.error_code.value if error and error.error_code else None
    detail = (error.message if error else None) or "no error message"
    state_name = state.value if state else "no state"
    msg = f"statement {response.statement_id} {state_name}: {f'{code}: ' if code else ''}{detail}"
    if code in _TRANSIENT_ERROR_CODES:
        raise dbx.TemporarilyUnavailable(msg)
    raise StatementFailed(msg)


def _cancel(w: WorkspaceClient, statement_id: str) -> None:
    # Best effort: the timeout is the error worth reporting.
    with contextlib.suppress(dbx.DatabricksError):
        w.statement_execution.cancel_execution(statement_id)


def _result(w: WorkspaceClient, response: sql.StatementResponse) -> QueryResult:
    statement_id = response.statement_id
    assert statement_id is not None
    manifest = response.manifest
    columns = (manifest.schema.columns if manifest and manifest.schema else None) or []
    types = [column.type_name.value if column.type_name else "STRING" for column in columns]
    rows: list[list[Value]] = []
    chunk = response.result
    while chunk is not None:
        rows.extend(_convert(row, types) for row in chunk.data_array or [])
        if chunk.next_chunk_index is None:
            break
        chunk = w.statement_execution.get_statement_result_chunk_n(statement_id, chunk.next_chunk_index)
    return QueryResult(
        statement_id=statement_id,
        columns=[column.name or "" for column in columns],
        column_types=types,
        rows=rows,
        row_count=len(rows),
        truncated=bool(manifest and manifest.truncated),
    )


def _convert(row: Sequence[str | None], types: list[str]) -> list[Value]:
    return [_value(value, kind) for value, kind in zip(row, types, strict=False)]


def _value(value: str | None, kind: str) -> Value:
    if value is None:
        return None
    if kind in _INTEGER_TYPES:
        return int(value)
    if kind in _FLOAT_TYPES:
        return float(value)
    if kind == "BOOLEAN":
        return value.lower() == "true"
    return value
