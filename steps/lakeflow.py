"""Steps that start Lakeflow (Declarative Pipelines) updates and read their state.

There is no step that waits for an update: an update can run for hours, and a
pipeline waits for it durably -- ``pipeline_update_state`` between durable sleeps --
so that a restart of the service costs one poll, not the wait.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import pipelines

from steps.retryable import DATABRICKS, retried

_TERMINAL = {
    pipelines.UpdateInfoState.COMPLETED,
    pipelines.UpdateInfoState.FAILED,
    pipelines.UpdateInfoState.CANCELED,
}

#: How many of the pipeline's newest error events to search for the update's error.
_ERROR_EVENTS_SEARCHED = 100


@dataclass(frozen=True)
class PipelineUpdate:
    """An update a step started."""

    pipeline_id: str
    update_id: str
    url: str


@dataclass(frozen=True)
class UpdateState:
    """Where an update is, in the terms a waiting pipeline branches on."""

    #: The API's state: QUEUED, CREATED, WAITING_FOR_RESOURCES, INITIALIZING,
    #: RESETTING, SETTING_UP_TABLES, RUNNING, STOPPING, COMPLETED, FAILED, CANCELED.
    state: str
    terminal: bool
    failed: bool
    #: Why it failed (the update's newest error event), or why it stopped; else None.
    message: str | None


def update_url(w: WorkspaceClient, pipeline_id: str, update_id: str) -> str:
    return f"{w.config.host.rstrip('/')}/pipelines/{pipeline_id}/updates/{update_id}"


@retried(DATABRICKS)
def start_pipeline_update(w: WorkspaceClient, pipeline_id: str, full_refresh: bool = False) -> PipelineUpdate:
    """Start an update of ``pipeline_id`` (all tables, or recomputed with ``full_refresh``).

    The API takes no idempotency token, and refuses to start an update while one is
    active; a step re-executed after a crash therefore fails with that conflict
    rather than starting a second update.
    """
    started = w.pipelines.start_update(pipeline_id, full_refresh=full_refresh)
    update_id = started.update_id
    assert update_id is not None
    return PipelineUpdate(
        pipeline_id=pipeline_id,
        update_id=update_id,
        url=update_url(w, pipeline_id, update_id),
    )


@retried(DATABRICKS)
def pipeline_update_state(w: WorkspaceClient, pipeline_id: str, update_id: str) -> UpdateState:
    """The state of one update; for a failed one, also the error that failed it.

    The update itself carries no error text, so for FAILED the pipeline's newest
    error events are searched for one of this update.
    """
    update = w.pipelines.get_update(pipeline_id, update_id).update
    state = update.state if update else None
    if state is None:
        msg = f"update {update_id} of pipeline {pipeline_id} has no state"
        raise ValueError(msg)
    failed = state == pipelines.UpdateInfoState.FAILED
    message = None
    if failed:
        message = _error_message(w, pipeline_id, update_id) or f"update {update_id} failed"
    elif state == pipelines.UpdateInfoState.CANCELED:
        message = f"update {update_id} was canceled"
    return UpdateState(state=state.value, terminal=state in _TERMINAL, failed=failed, message=message)


def _error_message(w: WorkspaceClient, pipeline_id: str, update_id: str) -> str | None:
    """The newest error event's message and the exceptions of all of the update's errors.

    The newest error is usually "Update ... is FAILED"; the cause (a missing table, a
    failed expectation) sits in the exceptions of that event or of a flow's earlier one.
    """
    events = w.pipelines.list_pipeline_events(pipeline_id, filter="level='ERROR'", max_results=_ERROR_EVENTS_SEARCHED)
    mine = [
        event
        for event in itertools.islice(events, _ERROR_EVENTS_SEARCHED)
        if event.origin is not None and event.origin.update_id == update_id
    ]
    if not mine:
        return None
    causes = [e.message for event in mine if event.error for e in event.error.exceptions or []]
    lines = [line for line in [mine[0].message, *causes] if line]
    return "\n".join(dict.fromkeys(lines)) or None  # dict: drop repeats, keep order
