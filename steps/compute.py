"""Steps that manage compute: clusters and SQL warehouses.

Each is one API call that starts a change and returns; none waits for the change to
finish. Waiting belongs to the pipeline, which polls :func:`cluster_state` or
:func:`warehouse_state` between durable sleeps, so a restart of DARA mid-wait costs
nothing and no worker thread sits blocked for the minutes a cluster takes to start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, sql

from steps.injected import StepIdentity
from steps.retryable import DATABRICKS, retried

#: Custom tag carrying the creating step's idempotency token (not named ``*_token``:
#: some workspaces refuse tag names that look like credentials).
STEP_TAG = "dara-step"

_CLUSTER_READY = {compute.State.RUNNING}
_CLUSTER_FAILED = {compute.State.ERROR, compute.State.UNKNOWN}
_WAREHOUSE_READY = {sql.State.RUNNING}
_WAREHOUSE_FAILED = {sql.State.DELETED, sql.State.DELETING}


@dataclass(frozen=True)
class ComputeStatus:
    """Where a cluster or warehouse is: enough for a pipeline to decide to wait or go on."""

    id: str
    state: str
    #: Can take work now.
    ready: bool
    #: Will not become ready by waiting (error, deleted).
    failed: bool
    message: str = ""


@retried(DATABRICKS)
def create_cluster(w: WorkspaceClient, info: StepIdentity, spec: dict[str, Any]) -> str:
    """Create an all-purpose cluster from a Clusters API spec; returns its id.

    Clusters have no idempotency token, so the step tags the cluster with its own and,
    when executed again after a crash, returns the cluster the first attempt created
    instead of starting a second one.
    """
    existing = _tagged_cluster(w, info.idempotency_token)
    if existing is not None:
        return existing
    settings = compute.ClusterSpec.from_dict(spec)
    settings.custom_tags = {**(settings.custom_tags or {}), STEP_TAG: info.idempotency_token}
    created = w.clusters.create(**_present(settings))
    cluster_id: str | None = created.response.cluster_id  # type: ignore[attr-defined]
    assert cluster_id is not None
    return cluster_id


def _tagged_cluster(w: WorkspaceClient, token: str) -> str | None:
    for cluster in w.clusters.list():
        if (cluster.custom_tags or {}).get(STEP_TAG) == token and cluster.cluster_id:
            return cluster.cluster_id
    return None


@retried(DATABRICKS)
def update_cluster(w: WorkspaceClient, cluster_id: str, spec: dict[str, Any]) -> None:
    """Replace a cluster's configuration (the Clusters API ``edit``: a full spec).

    A running cluster restarts to apply it; wait with :func:`cluster_state`.
    """
    settings = compute.ClusterSpec.from_dict(spec)
    if not settings.spark_version:
        msg = "a cluster update needs the full spec, including spark_version"
        raise ValueError(msg)
    w.clusters.edit(cluster_id=cluster_id, **_present(settings))


@retried(DATABRICKS)
def resize_cluster(
    w: WorkspaceClient,
    cluster_id: str,
    num_workers: int | None = None,
    min_workers: int | None = None,
    max_workers: int | None = None,
) -> None:
    """Change a running cluster's size: a fixed ``num_workers`` or an autoscale range."""
    if (num_workers is None) == (min_workers is None or max_workers is None):
        msg = "resize to either num_workers or both min_workers and max_workers"
        raise ValueError(msg)
    if num_workers is not None:
        w.clusters.resize(cluster_id, num_workers=num_workers)
    else:
        autoscale = compute.AutoScale(min_workers=min_workers, max_workers=max_workers)
        w.clusters.resize(cluster_id, autoscale=autoscale)


@retried(DATABRICKS)
def start_cluster(w: WorkspaceClient, cluster_id: str) -> None:
    """Start a terminated cluster (a running one is left as it is)."""
    if w.clusters.get(cluster_id).state in _CLUSTER_READY:
        return
    w.clusters.start(cluster_id)


@retried(DATABRICKS)
def restart_cluster(w: WorkspaceClient, cluster_id: str) -> None:
    w.clusters.restart(cluster_id)


@retried(DATABRICKS)
def terminate_cluster(w: WorkspaceClient, cluster_id: str) -> None:
    """Stop a cluster; it keeps its configuration and can be started again."""
    w.clusters.delete(cluster_id)


@retried(DATABRICKS)
def cluster_state(w: WorkspaceClient, cluster_id: str) -> ComputeStatus:
    details = w.clusters.get(cluster_id)
    state = details.state or compute.State.UNKNOWN
    return _status(cluster_id, state, _CLUSTER_READY, _CLUSTER_FAILED, details.state_message)


@retried(DATABRICKS)
def start_warehouse(w: WorkspaceClient, warehouse_id: str) -> None:
    w.warehouses.start(warehouse_id)


@retried(DATABRICKS)
def stop_warehouse(w: WorkspaceClient, warehouse_id: str) -> None:
    w.warehouses.stop(warehouse_id)


@retried(DATABRICKS)
def warehouse_state(w: WorkspaceClient, warehouse_id: str) -> ComputeStatus:
    details = w.warehouses.get(warehouse_id)
    health = details.health.summary if details.health is not None else None
    return _status(warehouse_id, details.state, _WAREHOUSE_READY, _WAREHOUSE_FAILED, health)


def _status[S: Enum](
    compute_id: str, state: S | None, ready: set[S], failed: set[S], message: str | None
) -> ComputeStatus:
    """A cluster's or a warehouse's state, judged by its kind's ready and failed states."""
    return ComputeStatus(
        id=compute_id,
        state=state.value if state is not None else "UNKNOWN",
        ready=state in ready,
        failed=state in failed,
        message=message or "",
    )


def _present(settings: compute.ClusterSpec) -> dict[str, Any]:
    """The spec's set fields as keyword arguments of ``clusters.create`` / ``edit``.

    ``ClusterSpec.from_dict`` turns absent lists into ``[]``, which the SDK would send;
    an empty list is left out instead, as the spec did not ask for it.
    """
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    return {name: value for name, value in values.items() if value is not None and value != []}
