"""Fuzz every operation in the OpenAPI schema against the running service.

Schemathesis generates requests from the schema, both valid and invalid: examples,
boundary ("coverage") cases and random ones. For each answer it checks that it is not
a 5xx, that the schema declares its status code and content type, and that its body
matches the schema for that code. Examples are capped per operation, so the whole
module finishes in seconds.

The service runs on embedded defaults without the demo deploy, so no Databricks is
needed. A run that does start (``GET /run`` starts ``notebook_job`` on the demo job,
which does not exist here) must fail as a run, not as a 5xx. The API token is set and
sent, so the guarded API is what gets fuzzed. Schemathesis also sends some requests
without it, and those must get the 401 the schema declares.

Nothing is excluded: every operation in the schema is fuzzed, and
``test_the_schema_covers_every_route`` checks that every route is in the schema.
Operations with a known bug outside this test's change are expected to fail
(``KNOWN_BUGS``) until the bug is fixed.
The schema is built from the app when the module is collected, so pytest gets one
test per operation. ``test_the_fuzzed_schema_is_the_served_one`` pins it to the
``/openapi.json`` the running service serves. ``schemathesis.pytest.from_fixture``,
which would load it from the service directly, fails on pytest 9 in schemathesis 4.x:
it sets ``request.node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.settings import Settings
from tests.harness import Service, make_settings, running_service

TOKEN = "fuzz-api-token-0123456789abcdef"
MAX_EXAMPLES = 25  # per operation, for the random phase; examples and boundary cases come on top
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Bugs this test found outside the files of its change, each expected to fail until
#: fixed. Once an operation passes it shows as XPASS in the summary (-rX): delete its
#: entry then. (Not strict: schemathesis' pytest plugin trips over a strict XPASS.)
KNOWN_BUGS: dict[str, str] = {}


def fuzz_settings(state_dir: Path, jobs_root: Path) -> Settings:
    # An empty DARA_JOBS_ROOT: a fuzzed folder name never deploys a real task graph.
    return make_settings(state_dir, deploy_on_start=False, api_token=TOKEN, jobs_root=jobs_root)


# The schema only depends on what routes there are and on whether access is guarded;
# building the app touches no files (the runtime starts with the server).
schema = schemathesis.openapi.from_dict(create_app(fuzz_settings(Path("unused"), Path("unused"))).openapi())


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    state, jobs = tmp_path_factory.mktemp("fuzz"), tmp_path_factory.mktemp("jobs")
    with running_service(fuzz_settings(state, jobs)) as svc:
        svc.http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield svc


def test_the_fuzzed_schema_is_the_served_one(fuzzed_service: Service) -> None:
    assert fuzzed_service.http.get("/openapi.json").json() == schema.raw_schema


def test_the_schema_covers_every_route(fuzzed_service: Service) -> None:
    """Nothing escapes the fuzzing by being left out of the schema."""
    paths = set(fuzzed_service.http.get("/openapi.json").json()["paths"])
    docs = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/static/docs", "/static/console"}
    routes = set(route_paths(fuzzed_service.app.routes)) - docs
    assert routes <= paths, routes - paths


def route_paths(routes: list[Any], prefix: str = "") -> Iterator[str]:
    """Every route's path, through the routers FastAPI keeps as included-router entries."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from route_paths(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI fails on a change, not on the dice
    database=None,  # no replays of earlier failures either: each run stands alone
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_as_its_schema_says(
    case: schemathesis.Case, fuzzed_service: Service, request: pytest.FixtureRequest
) -> None:
    if reason := KNOWN_BUGS.get(case.operation.label):
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))
    case.call_and_validate(base_url=fuzzed_service.url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
