"""Liveness, which kinds of backend this instance is wired to, and whether the backend works.

Open to anyone (probes), so it names kinds only: never the workspace's host or the
Resonate server's address. On Postgres it runs ``SELECT 1`` (1 s at most) and looks at
the timer driver (app.durable.postgres_backend): a database that does not answer, or
timers that have not fired for DARA_TIMER_ALERT_AFTER, make it a 503 that says which.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from app.dependencies import RuntimeDep
from app.settings import Settings

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"] = "ok"
    resonate: Literal["in-process", "server", "postgres"]
    workspace: Literal["embedded", "databricks"]
    problem: str | None = Field(
        default=None,
        description="Only when degraded: the backend is unreachable, or its timers are behind.",
    )


DEGRADED: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "The backend is unreachable, or its timers are behind."}
}


def backend_kind(settings: Settings) -> Literal["in-process", "server", "postgres"]:
    return "server" if settings.resonate_url else "postgres" if settings.postgres_dsn else "in-process"


@router.get("/health", response_model=Health, response_model_exclude_none=True, responses=DEGRADED)
async def health(runtime: RuntimeDep) -> Health | JSONResponse:
    settings = runtime.settings
    backend = backend_kind(settings)
    workspace: Literal["embedded", "databricks"] = "embedded" if settings.uses_embedded_workspace else "databricks"
    if problem := await runtime.backend_problem():
        body = Health(status="degraded", resonate=backend, workspace=workspace, problem=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(resonate=backend, workspace=workspace)
