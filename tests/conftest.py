from __future__ import annotations

from collections.abc import Iterator

import pytest

# Fixtures shared by every module: imported here so that pytest finds them (ruff: F401 is
# a false positive for a conftest re-export).
from tests.browser import browser  # noqa: F401
from tests.databricks_double import databricks_double  # noqa: F401
from tests.harness import Service, make_settings, running_service
from tests.postgres import postgres_dsn, postgres_server  # noqa: F401
from tests.test_postgres_lakebase import lakebase  # noqa: F401


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service on embedded defaults, shared by a module's tests."""
    with running_service(make_settings(tmp_path_factory.mktemp("dara"))) as svc:
        yield svc


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
