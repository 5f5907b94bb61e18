"""``GET /metrics``: the runtime's Prometheus metrics (app.metrics).

Guarded like every API route: with DARA_API_TOKEN set, the scraper sends it as a
bearer token (Prometheus: ``authorization: {credentials: ...}`` in the scrape config).
Backend health is checked as the scrape is answered, with the check ``GET /health`` runs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.dependencies import RuntimeDep
from app.routers.health import backend_kind

router = APIRouter(tags=["observability"])

FORMATS = {
    "text/plain": {"schema": {"type": "string"}},
    "application/openmetrics-text": {"schema": {"type": "string"}},
}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": FORMATS, "description": "Prometheus text, or OpenMetrics when asked for."}},
)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Runs started and ended, run and wait durations, callback-to-resume latency, step
    retries, watcher and failed Databricks calls, and backend health."""
    problem = await runtime.backend_problem()
    runtime.metrics.backend(backend_kind(runtime.settings), healthy=problem is None)
    body, content_type = runtime.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
