from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.pipelines_for_tests  # noqa: F401 -- registers the test-only pipelines
from tests.databricks_double import databricks_double  # noqa: F401 -- a shared fixture
from tests.postgres import postgres_dsn, postgres_server  # noqa: F401 -- shared fixtures
from tests.harness import Service, make_settings, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service on embedded defaults, shared by a module's tests."""
    with running_service(make_settings(tmp_path_factory.mktemp("dara"))) as svc:
        yield svc


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
