"""What steps.compute makes of a cluster's and a warehouse's state, over real HTTP.

brickhouse's clusters and warehouses are always healthy; a pipeline waiting on compute
must still tell "wait" from "give up" when one errs, is deleted or reports no state at
all, so those answers come from the Databricks double.
"""

from __future__ import annotations

from typing import Any

import pytest

from scripts.databricks_double import DatabricksDouble, workspace_client
from steps.compute import ComputeStatus, cluster_state, warehouse_state

CLUSTER = "/api/2.1/clusters/get"
WAREHOUSE = "/api/2.0/sql/warehouses/{id}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"state": "RUNNING"}, ComputeStatus("c-1", "RUNNING", ready=True, failed=False)),
        ({"state": "PENDING"}, ComputeStatus("c-1", "PENDING", ready=False, failed=False)),
        (
            {"state": "ERROR", "state_message": "Driver unreachable"},
            ComputeStatus("c-1", "ERROR", ready=False, failed=True, message="Driver unreachable"),
        ),
        # No state at all is UNKNOWN, which waiting will not change.
        ({}, ComputeStatus("c-1", "UNKNOWN", ready=False, failed=True)),
    ],
)
def test_cluster_state(databricks_double: DatabricksDouble, body: dict[str, Any], expected: ComputeStatus) -> None:
    databricks_double.route("GET", CLUSTER, {"cluster_id": "c-1", **body})
    assert cluster_state(workspace_client(databricks_double), "c-1") == expected
    assert databricks_double.only_request("GET", CLUSTER).query == {"cluster_id": ["c-1"]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"state": "RUNNING"}, ComputeStatus("w-1", "RUNNING", ready=True, failed=False)),
        (
            {"state": "STARTING", "health": {"summary": "Acquiring capacity"}},
            ComputeStatus("w-1", "STARTING", ready=False, failed=False, message="Acquiring capacity"),
        ),
        ({"state": "DELETED"}, ComputeStatus("w-1", "DELETED", ready=False, failed=True)),
        # Unlike a cluster's, a warehouse's missing state is not taken as a failure.
        ({}, ComputeStatus("w-1", "UNKNOWN", ready=False, failed=False)),
    ],
)
def test_warehouse_state(databricks_double: DatabricksDouble, body: dict[str, Any], expected: ComputeStatus) -> None:
    databricks_double.route("GET", WAREHOUSE, {"id": "w-1", **body})
    assert warehouse_state(workspace_client(databricks_double), "w-1") == expected
    assert databricks_double.only_request("GET", WAREHOUSE).params == {"id": "w-1"}
