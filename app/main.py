"""The FastAPI application: routers per resource, one runtime per process."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from resonate.error import ConnectorError, ResonateError
from resonate_base.connections import Network
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.console import assets
from app.durable import Pipeline
from app.http_guard import AllowedHosts, HttpGuard, declare_responses
from app.limits import LIMIT_RESPONSES, BodyLimit
from app.request_id import RequestId
from app.routers import (
    answers,
    callbacks,
    console_databricks,
    console_login,
    console_pages,
    exports,
    health,
    jobs,
    metrics,
    pages,
    pipelines,
    resonate_protocol,
    run_events,
    runs,
    uploads,
    workspace,
)
from app.runtime import Runtime
from app.security import ApiAccess, redact_access_log
from app.services.errors import ServiceError
from app.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    network: Network | None = None,
    pipelines_to_run: Iterable[Pipeline] | None = None,
) -> FastAPI:
    """The service. ``network`` lets a test share one in-process Resonate server;
    ``pipelines_to_run`` replaces the service's own (``pipelines.PIPELINES``)."""
    settings = settings or get_settings()
    access = ApiAccess.from_settings(settings)  # refuses a too-short DARA_API_TOKEN up front
    hosts = AllowedHosts.parse(settings.host_names)  # and a DARA_ALLOWED_HOSTS entry that is no host
    redact_access_log()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = await Runtime.start(settings, network=network, pipelines=pipelines_to_run)
        # Everything loaded so far (FastAPI, databricks-sdk, the workspace) lives as long
        # as the process: keep it out of the collector's full passes, whose pauses were
        # the tail of request latency (docs/PERFORMANCE.md).
        gc.freeze()
        try:
            yield
        finally:
            await app.state.runtime.stop()

    app = FastAPI(
        title="DARA",
        summary="Durable orchestration for Databricks, on Resonate",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served from DARA's own copies of Swagger UI and ReDoc (app.console.assets)
        redoc_url=None,
    )
    assets.install(app)
    for router in (
        uploads.router,  # before runs: /runs/upload_and_process is not a run id
        runs.router,
        callbacks.router,
        pipelines.router,
        jobs.router,
        pages.router,
        console_databricks.router,
        console_pages.router,
        workspace.router,
        exports.router,
        metrics.router,
        health.router,
        run_events.router,
    ):
        # Open: /health for probes; /resolve and /reject, which check their per-promise
        # token; Databricks' run events, which check the destination's Basic auth. Every
        # other router, including any added to this list, needs API access.
        guarded = all(router is not open_ for open_ in (health.router, callbacks.router, run_events.router))
        app.include_router(
            router,
            dependencies=access.dependencies() if guarded else None,
            responses={**LIMIT_RESPONSES, **(access.responses() if guarded else {})},
        )
    # Open: how a browser signs in to the console with the token (app.routers.console_login).
    app.include_router(console_login.build_router(access))
    # Starlette types a handler's exception as any Exception; this one is registered for its own.
    app.add_exception_handler(StarletteHTTPException, console_login.sign_in_first)  # type: ignore[arg-type]
    # What the run services refuse (app.services.errors), answered with its status.
    app.add_exception_handler(ServiceError, answers.refused)
    # The resonate CLI's protocol checks the API token itself, to refuse in the CLI's envelope.
    app.include_router(resonate_protocol.build_router(access))
    declare_responses(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_value_bytes, max_json_depth=settings.max_json_depth)
    # Added last, so it runs first: a request for another host or from another site is
    # refused before anything reads it, and every answer gets the security headers.
    app.add_middleware(
        HttpGuard,
        hosts=hosts,
        swagger_paths=(assets.DOCS_URL, assets.OAUTH2_REDIRECT_URL),
        redoc_paths=(assets.REDOC_URL,),
    )
    # Outermost: every answer, a refusal by the guard included, carries its request id,
    # and every log line of the request names it (app.request_id).
    app.add_middleware(RequestId)

    @app.exception_handler(ResonateError)
    async def resonate_unavailable(request: Request, exc: ResonateError) -> JSONResponse:
        logger.warning("Resonate error on %s: %s", request.url.path, exc)
        if isinstance(exc, ConnectorError):  # the connection to it failed (e.g. Postgres is down)
            detail = f"the Resonate backend is unreachable: {exc.error}; try again shortly"
        else:
            detail = f"the Resonate backend failed: {exc}; check RESONATE_URL or DARA_POSTGRES_DSN"
        return JSONResponse({"detail": detail}, status_code=503)

    return app
