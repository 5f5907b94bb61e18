"""What can be run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.dependencies import RuntimeDep

router = APIRouter(tags=["pipelines"])


class PipelineInfo(BaseModel):
    name: str
    description: str
    params: dict[str, Any]
    server_only: str | None = Field(
        description="The route that starts it, if only DARA may (POST /runs refuses it); else null."
    )


@router.get("/pipelines", response_model=list[PipelineInfo])
async def list_pipelines(runtime: RuntimeDep) -> list[PipelineInfo]:
    """Every registered pipeline, with a JSON schema of its parameters."""
    return [
        PipelineInfo(
            name=p.name,
            description=p.description,
            params=p.params.model_json_schema(),
            server_only=p.server_only,
        )
        for p in sorted(runtime.pipelines.values(), key=lambda p: p.name)
    ]
