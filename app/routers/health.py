"""Liveness, and which kinds of backend this instance is wired to.

Open to anyone (probes), so it names kinds only: never the workspace's host or the
Resonate server's address.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.dependencies import RuntimeDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    resonate: Literal["in-process", "server", "postgres"]
    workspace: Literal["embedded", "databricks"]


@router.get("/health", response_model=Health)
async def health(runtime: RuntimeDep) -> Health:
    settings = runtime.settings
    backend = "server" if settings.resonate_url else "postgres" if settings.postgres_dsn else "in-process"
    return Health(resonate=backend, workspace="embedded" if settings.uses_embedded_workspace else "databricks")
