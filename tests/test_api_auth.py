"""API access: a bearer token (DARA_API_TOKEN) on every route but /health, the docs
and the callbacks; or the user a Databricks Apps proxy forwards (DARA_TRUST_FORWARDED_USER).
No answer and no log line ever carries a secret."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute

from app import routers
from app.main import create_app
from app.security import ApiAccess, CurrentUser, audit
from tests.harness import APPS_RUNTIME, SECRET, Service, callback_token, make_settings, running_service, sign

TOKEN = "api-token-for-tests-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ADA = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-User": "4711@1234", "X-Forwarded-Preferred-Username": "ada"}
CLIENT_LOGGERS = {"httpx", "httpcore"}
OPEN_OPERATIONS = {
    ("get", "/health"),
    ("post", "/api/resolve"),
    ("post", "/api/reject"),
    ("post", "/resolve"),
    ("post", "/reject"),
    # Databricks' job notifications check the destination's Basic auth (tests/test_run_events.py).
    ("post", "/api/databricks/run-events"),
    # The console's way in: a browser trades the token for a session cookie (tests/test_console_access.py).
    ("get", "/ui/login"),
    ("post", "/ui/login"),
    ("post", "/ui/logout"),
}


def guarded_operations() -> list[tuple[str, str]]:
    """Every operation of the API but the open ones, as the schema lists them."""
    schema = create_app(make_settings(Path("unused"), api_token=TOKEN)).openapi()
    operations = [(method, path) for path, item in schema["paths"].items() for method in item]
    assert OPEN_OPERATIONS <= set(operations)
    return [op for op in operations if op not in OPEN_OPERATIONS]


def refusal(response: httpx.Response) -> str:
    """A refusal's message: ``detail``, or ``data`` in the Resonate protocol's envelope (/resonate/)."""
    body = response.json()
    return body["detail"] if "detail" in body else body["data"]


def concrete(path: str) -> str:
    return path.replace("{run_id}", "some-run")


@pytest.fixture(scope="module", autouse=True)
def as_a_databricks_app() -> Iterator[None]:
    """Forwarded users are trusted only inside the Apps runtime: these tests run as if there."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in APPS_RUNTIME.items():
            env.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("auth"), deploy_on_start=False, api_token=TOKEN)) as svc:
        yield svc


@pytest.fixture(scope="module")
def app_behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """As a Databricks App: forwarded users trusted, and the token for automation."""
    settings = make_settings(
        tmp_path_factory.mktemp("apps"), deploy_on_start=False, api_token=TOKEN, trust_forwarded_user=True
    )
    with running_service(settings) as svc:
        yield svc


# -- what stays open -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
def test_health_and_docs_need_no_token(guarded: Service, path: str) -> None:
    response = guarded.http.get(path)

    assert response.status_code == 200, response.text
    assert {"/health": '"status":"ok"', "/docs": "SwaggerUIBundle", "/openapi.json": '"openapi"'}[path] in response.text


def test_callbacks_need_no_api_token_only_their_own(guarded: Service) -> None:
    started = guarded.http.post("/runs", json={"pipeline": "waits_for_callback", "id": "auth-cb"}, headers=BEARER)
    assert started.status_code == 201, started.text
    guarded.http.headers.update(BEARER)
    try:
        guarded.wait_until("auth-cb", "waiting")
    finally:
        del guarded.http.headers["Authorization"]

    forged = guarded.http.post("/reject", json={"id": "auth-cb:1", "error": "x", "token": "0" * 64})
    resolved = guarded.http.post(
        "/resolve",
        json={"id": "auth-cb:1", "value": 7, "token": callback_token("auth-cb:1", started.json()["incarnation"])},
    )

    assert forged.status_code == 403
    assert "token does not match promise 'auth-cb:1'" in forged.json()["detail"]
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["state"] == "resolved"


# -- what needs the token --------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), guarded_operations(), ids=" ".join)
def test_every_other_route_needs_the_token(guarded: Service, method: str, path: str) -> None:
    url = concrete(path)

    missing = guarded.http.request(method, url)
    basic = guarded.http.request(method, url, headers={"Authorization": "Basic YWRhOmFkYQ=="})
    wrong = guarded.http.request(method, url, headers={"Authorization": f"Bearer {TOKEN[:-1]}X"})

    assert missing.status_code == basic.status_code == 401, (missing.text, basic.text)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert refusal(missing) == (
        "missing API token: no Authorization header; send `Authorization: Bearer <DARA_API_TOKEN>`"
    )
    assert "not `Bearer <token>`" in refusal(basic)
    assert wrong.status_code == 403, wrong.text
    assert refusal(wrong) == "wrong API token: it does not match DARA_API_TOKEN"
    assert wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("get", "/runs", 200),
        ("get", "/pipelines", 200),
        ("get", "/ui", 200),
        ("get", "/runs/some-run", 404),  # past the guard: the run does not exist
        ("get", "/jobs/preview?folder=task_graph", 200),
    ],
)
def test_the_right_token_gets_through(guarded: Service, method: str, path: str, code: int) -> None:
    response = guarded.http.request(method, path, headers=BEARER)

    assert response.status_code == code, response.text
    assert "API token" not in response.text  # answered by the route, not refused by the guard
    if code == 404:
        assert response.json()["detail"].startswith("no run 'some-run'"), response.text


def test_the_scheme_is_case_insensitive_and_the_schema_declares_it(guarded: Service) -> None:
    response = guarded.http.get("/runs", headers={"Authorization": f"bearer {TOKEN}"})
    schema = guarded.http.get("/openapi.json").json()

    assert response.status_code == 200, response.text
    assert "runs" in response.json()
    assert schema["components"]["securitySchemes"]["DARA_API_TOKEN"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <DARA_API_TOKEN>`",
    }
    assert schema["paths"]["/runs"]["get"]["security"] == [{"DARA_API_TOKEN": []}]
    assert "security" not in schema["paths"]["/api/resolve"]["post"]
    assert set(schema["paths"]["/runs"]["get"]["responses"]) >= {"401", "403"}


def test_without_a_token_configured_the_api_is_open(service: Service) -> None:
    response = service.http.get("/runs")

    assert response.status_code == 200, response.text
    assert "runs" in response.json()
    assert "securitySchemes" not in service.http.get("/openapi.json").json().get("components", {})


def test_a_short_token_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DARA_API_TOKEN must be at least 16 characters"):
        create_app(make_settings(tmp_path, api_token="short"))


# -- Databricks Apps: the forwarded user -----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [ADA, {"X-Forwarded-Email": "ada@example.com"}, {"X-Forwarded-User": "4711@1234"}],
    ids=["all", "email", "user"],
)
def test_a_forwarded_user_needs_no_token_when_trusted(app_behind_proxy: Service, headers: dict[str, str]) -> None:
    response = app_behind_proxy.http.get("/runs", headers=headers)

    assert response.status_code == 200, response.text
    assert "runs" in response.json()


def test_behind_the_proxy_the_token_still_works_and_nothing_else_does(app_behind_proxy: Service) -> None:
    with_token = app_behind_proxy.http.get("/runs", headers=BEARER)
    only_name = app_behind_proxy.http.get("/runs", headers={"X-Forwarded-Preferred-Username": "ada"})
    nothing = app_behind_proxy.http.get("/runs")

    assert with_token.status_code == 200 and "runs" in with_token.json(), with_token.text
    assert only_name.status_code == nothing.status_code == 401
    assert (
        only_name.json()["detail"]
        == nothing.json()["detail"]
        == (
            "missing API token: no Authorization header; send `Authorization: Bearer <DARA_API_TOKEN>` "
            "or come through the Databricks Apps proxy, which sets X-Forwarded-Email"
        )
    )


def test_forwarded_users_are_not_trusted_unless_configured(guarded: Service) -> None:
    response = guarded.http.get("/runs", headers=ADA)

    assert response.status_code == 401, response.text
    assert response.json()["detail"] == (
        "missing API token: no Authorization header; send `Authorization: Bearer <DARA_API_TOKEN>`"
    )


def test_trusting_the_proxy_without_a_token_still_refuses_requests_from_elsewhere(tmp_path: Path) -> None:
    access = ApiAccess.from_settings(make_settings(tmp_path, trust_forwarded_user=True))

    nothing = whoami(access, {})
    bearer = whoami(access, BEARER)

    assert nothing.status_code == bearer.status_code == 401
    assert nothing.json()["detail"].endswith("come through the Databricks Apps proxy, which sets X-Forwarded-Email")
    assert bearer.json()["detail"].startswith("no API token is configured (DARA_API_TOKEN)")
    assert whoami(access, ADA).json() == "ada@example.com"


def identity_app(access: ApiAccess) -> FastAPI:
    """A guarded route that answers who the caller is, as request.state.user has it."""
    router = APIRouter()

    @router.get("/whoami")
    def whoami(user: CurrentUser) -> str:
        return user

    app = FastAPI()
    app.include_router(router, dependencies=access.dependencies())
    return app


def whoami(access: ApiAccess, headers: dict[str, str]) -> httpx.Response:
    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=identity_app(access))
        async with httpx.AsyncClient(transport=transport, base_url="http://dara.test") as client:
            return await client.get("/whoami", headers=headers)

    return asyncio.run(ask())


@pytest.mark.parametrize(
    ("headers", "user"),
    [
        (ADA, "ada@example.com"),  # the email first
        ({"X-Forwarded-User": "4711@1234", "X-Forwarded-Preferred-Username": "ada"}, "ada"),
        ({"X-Forwarded-User": "4711@1234"}, "4711@1234"),
        ({"X-Forwarded-Email": "a\tb" + "x" * 300}, "a?b" + "x" * 253),  # printable and bounded, for logs
        (BEARER, "api-token"),
    ],
)
def test_who_the_caller_is(tmp_path: Path, headers: dict[str, str], user: str) -> None:
    settings = make_settings(tmp_path, api_token=TOKEN, trust_forwarded_user=True)

    assert whoami(ApiAccess.from_settings(settings), headers).json() == user


def test_an_open_api_calls_everyone_anonymous(tmp_path: Path) -> None:
    assert whoami(ApiAccess.from_settings(make_settings(tmp_path)), ADA).json() == "anonymous"


def test_audit_logs_who_did_what(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app.audit"):
        audit("ada@example.com", "started", "nightly", "notebook_job")

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "ada@example.com started run 'nightly' (notebook_job)")
    ]


def test_run_starts_and_cancels_are_logged_with_the_user(
    app_behind_proxy: Service, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.audit"):
        started = app_behind_proxy.http.post(
            "/runs", json={"pipeline": "waits_for_callback", "id": "auth-audit"}, headers=ADA
        )
        cancelled = app_behind_proxy.http.post("/runs/auth-audit/cancel", headers=ADA)

    assert (started.status_code, cancelled.status_code) == (201, 200), (started.text, cancelled.text)
    assert (started.json()["id"], cancelled.json()["run"]["status"]) == ("auth-audit", "cancelled")
    messages = [r.getMessage() for r in caplog.records if r.name == "app.audit" and r.levelno == logging.INFO]
    assert any("ada@example.com" in m and "auth-audit" in m for m in messages), messages
    assert any("ada@example.com cancelled" in m and "auth-audit" in m for m in messages), messages


# -- secrets stay secret -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [None, TOKEN[:-1], TOKEN + "x", TOKEN.upper(), f"{TOKEN} {TOKEN}", "\u00e9" + TOKEN],
    ids=["none", "prefix", "longer", "upper", "twice", "non-ascii"],
)
def test_refusals_never_show_the_token(guarded: Service, sent: str | None) -> None:
    headers = {"Authorization": f"Bearer {sent}".encode()} if sent else {}

    response = guarded.http.post("/runs", json={"pipeline": "waits_for_callback"}, headers=headers)

    assert response.status_code in (401, 403), response.text
    shown = response.text + repr(response.headers)
    assert TOKEN not in shown
    assert TOKEN[:8] not in shown
    if sent:
        assert sent not in response.text  # nor what was sent in its place


def test_settings_and_access_hide_the_token_when_printed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_token=TOKEN)

    assert TOKEN not in repr(settings) + str(settings)
    assert TOKEN not in repr(ApiAccess.from_settings(settings))


@pytest.fixture
def every_log_line(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, also fed by uvicorn's own loggers (which do not propagate), at every level."""
    own = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [logger.level for logger in own]
    for logger in own:
        logger.addHandler(caplog.handler)
        logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for logger, level in zip(own, levels, strict=True):
            logger.removeHandler(caplog.handler)
            logger.setLevel(level)


def test_logs_never_carry_the_token_or_the_callback_secret(
    app_behind_proxy: Service, every_log_line: pytest.LogCaptureFixture
) -> None:
    http = app_behind_proxy.http
    http.post("/runs", json={"pipeline": "waits_for_callback", "id": "auth-logs"}, headers=BEARER).raise_for_status()
    http.headers.update(BEARER)
    try:
        app_behind_proxy.wait_until("auth-logs", "waiting")
    finally:
        del http.headers["Authorization"]
    http.get("/runs/auth-logs", headers=ADA).raise_for_status()
    http.get("/runs", headers={"Authorization": f"Bearer {TOKEN}x"})  # refused, and logged as such
    http.headers.update(BEARER)
    try:
        callback_token = sign(http, "auth-logs:1")
    finally:
        del http.headers["Authorization"]
    http.post("/resolve", params={"id": "auth-logs:1", "value": "1", "token": callback_token}).raise_for_status()
    http.post("/runs", json={"pipeline": "waits_for_callback", "id": "auth-logs-2"}, headers=BEARER).raise_for_status()
    http.post("/runs/auth-logs-2/cancel", headers=BEARER).raise_for_status()

    # The service's log lines; httpx and httpcore log for this test's client, which sent them.
    service_records = [r for r in every_log_line.records if r.name.split(".")[0] not in CLIENT_LOGGERS]
    lines = [every_log_line.handler.format(record) for record in service_records]
    text = "\n".join(lines)
    assert any("POST /resolve?" in line and "token=[redacted]" in line for line in lines), text  # it was logged
    assert any("refused GET /runs" in line for line in lines), text
    for secret in (TOKEN, SECRET, callback_token):
        assert secret not in text


def test_the_access_log_redacts_callback_tokens() -> None:
    from app.security import RedactQueryTokens

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "POST", "/resolve?id=a:1&token=abc123&value=1", "1.1", 200),
        None,
    )

    RedactQueryTokens().filter(record)

    assert record.getMessage() == '127.0.0.1:1 - "POST /resolve?id=a:1&token=[redacted]&value=1 HTTP/1.1" 200'


def test_a_run_started_with_the_token_is_reachable_through_the_proxy_too(app_behind_proxy: Service) -> None:
    """Both ways in lead to the same API."""
    started = app_behind_proxy.http.post(
        "/runs", json={"pipeline": "waits_for_callback", "id": "auth-both"}, headers=BEARER
    )

    assert started.status_code == 201, started.text
    assert started.json()["id"] == "auth-both"
    assert app_behind_proxy.http.get("/runs/auth-both", headers=ADA).json()["id"] == "auth-both"


def test_no_endpoint_or_dependency_hops_to_a_worker_thread() -> None:
    """FastAPI runs a sync ``def`` endpoint or dependency on a worker thread, per request.
    One such hop in POST /runs cost about 6% of a start's CPU (docs/PERFORMANCE.md)."""
    access = ApiAccess.from_settings(make_settings(Path("unused"), api_token=TOKEN, trust_forwarded_user=True))
    modules = [importlib.import_module(f"app.routers.{info.name}") for info in pkgutil.iter_modules(routers.__path__)]
    dependants = [
        route.dependant
        for module in modules
        for route in getattr(module, "router", APIRouter()).routes
        if isinstance(route, APIRoute)
    ]
    dependants += [get_dependant(path="/", call=depends.dependency) for depends in access.dependencies()]

    def calls(dependant: Dependant) -> Iterator[Any]:
        yield dependant.call
        for sub in dependant.dependencies:
            yield from calls(sub)

    def on_the_loop(call: Any) -> bool:
        return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004 -- the method itself, not callable()

    found = [call for dependant in dependants for call in calls(dependant) if call is not None]
    on_threads = {getattr(call, "__qualname__", type(call).__name__) for call in found if not on_the_loop(call)}

    assert len(found) > len(dependants) > 10  # the walk reached the routes and their dependencies
    assert on_threads == set()
