"""FastAPI dependencies: the running runtime, and what hangs off it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:  # async: no threadpool hop per request
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
