from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.databricks_double import DatabricksDouble

# Fixtures shared by every module: imported here so that pytest finds them (ruff: F401 is
# a false positive for a conftest re-export).
from tests.browser import browser  # noqa: F401
from tests.harness import Service, make_settings, running_service
from tests.postgres import postgres_dsn, postgres_server  # noqa: F401
from tests.test_postgres_lakebase import lakebase  # noqa: F401


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service on embedded defaults, shared by a module's tests."""
    with running_service(make_settings(tmp_path_factory.mktemp("dara"))) as svc:
        yield svc


@pytest.fixture
def databricks_double() -> Iterator[DatabricksDouble]:
    """A running double with no routes but the SDK's host-metadata probe.

    Fails the test if a route handler raised, even where the step swallowed the 500, and
    if it served a body databricks-sdk's types do not read (scripts/databricks_shapes.py).
    """
    with DatabricksDouble() as double:
        yield double
    assert not double.handler_errors, f"double's handlers raised: {double.handler_errors}"
    assert not double.shape_errors, f"the double served bodies databricks-sdk does not read: {double.shape_errors}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
