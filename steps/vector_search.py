"""Steps that keep Vector Search indexes in step with their source tables."""

from __future__ import annotations

from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest

from steps.retryable import DATABRICKS, retried

#: How the API refuses a sync while the index's sync pipeline is still running:
#: "Index is not ready to sync yet. Pipeline is in state RUNNING and needs to be in one
#: of the following states to sync: COMPLETED, FAILED, CANCELED."
_SYNC_RUNNING = "Pipeline is in state RUNNING"


@dataclass(frozen=True)
class IndexSync:
    """A sync a step asked for: which index, where to watch it, and whether it started."""

    index_name: str
    url: str
    #: False when a sync was already running, so this request started none. A step
    #: re-executed after a crash lands here (the first attempt's sync is running); a
    #: pipeline that must have rows it just wrote indexed waits and syncs again.
    started: bool


@retried(DATABRICKS)
def sync_vector_index(w: WorkspaceClient, index_name: str) -> IndexSync:
    """Trigger a sync of the Delta Sync index ``index_name`` (``catalog.schema.index``).

    The API returns nothing to wait on; the sync runs in the background, and a
    pipeline that needs it finished polls the index between durable sleeps.
    """
    parts = index_name.split(".")
    if len(parts) != 3 or not all(parts):
        msg = (
            f"{index_name!r} is not a full index name; expected <catalog>.<schema>.<index>, "
            "e.g. main.default.docs_index"
        )
        raise ValueError(msg)
    catalog, schema, name = parts
    url = f"{w.config.host.rstrip('/')}/explore/data/{catalog}/{schema}/{name}"
    try:
        w.vector_search_indexes.sync_index(index_name)
    except BadRequest as exc:
        if _SYNC_RUNNING not in str(exc):
            raise
        return IndexSync(index_name=index_name, url=url, started=False)
    return IndexSync(index_name=index_name, url=url, started=True)
