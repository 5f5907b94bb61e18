"""Liveness, and which backends this instance is wired to."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.dependencies import RuntimeDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    resonate: Literal["in-process", "server", "postgres"]
    workspace: str


@router.get("/health", response_model=Health)
async def health(runtime: RuntimeDep) -> Health:
    settings = runtime.settings
    backend = "server" if settings.resonate_url else "postgres" if settings.postgres_dsn else "in-process"
    return Health(resonate=backend, workspace=runtime.workspace.config.host or "")
