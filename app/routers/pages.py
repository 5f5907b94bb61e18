"""Status pages for people: recent runs, and one run with its timeline.

Server-rendered HTML over the same reads as the JSON API (so nothing here can disagree
with ``GET /runs/{id}``). A run in flight is kept current by its page's script
(app/static/live.js), which long-polls ``/ui/runs/{id}/live`` for the same fragment,
sent again only when the run changed: no reload, no polling faster than the run moves.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from app.console.layout import badge, page
from app.console.live import UNCHANGED, Seen, Wait, changed_fragment, live_attributes
from app.console.run_view import is_final, run_fragment, version
from app.dependencies import RuntimeDep
from app.routers.answers import NO_RUN
from app.services import reading
from app.services.run_status import RUN_ID_PATTERN, RunView

router = APIRouter(prefix="/ui", tags=["pages"], default_response_class=HTMLResponse)


@router.get("", summary="Recent runs")
async def runs_page(runtime: RuntimeDep) -> str:
    recent = await reading.list_runs(runtime, limit=50)
    rows = "".join(
        f'<tr><td><a href="/ui/runs/{escape(run.id)}">{escape(run.id)}</a></td><td>{escape(run.pipeline)}</td>'
        f"<td>{badge(run.status)}</td><td>{escape(run.started_by)}</td><td>{run.progress.done}/{run.progress.seen}</td>"
        f"<td>{run.started_at:%Y-%m-%d %H:%M:%S}</td><td>{run.elapsed_seconds:.1f} s</td></tr>"
        for run in recent.runs
    )
    pipelines = ", ".join(f"<code>{escape(name)}</code>" for name in sorted(runtime.pipelines))
    body = (
        "<h1>DARA runs</h1>"
        f"<p>Pipelines: {pipelines}. JSON: <a href=/runs>/runs</a>, API docs: <a href=/docs>/docs</a>.</p>"
        "<table><tr><th>run</th><th>pipeline</th><th>status</th><th>started by</th><th>progress</th><th>started</th>"
        f"<th>elapsed</th></tr>{rows or '<tr><td colspan=7>No runs yet.</td></tr>'}</table>"
    )
    return page("runs", body)


RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN)]


@router.get("/runs/{run_id}", summary="One run", responses=NO_RUN)
async def run_page(run_id: RunIdPath, runtime: RuntimeDep) -> str:
    run = await _read(runtime, run_id)
    live = live_attributes(f"/ui/runs/{run.id}/live", version(run), is_final(run))
    body = f'<p><a href="/ui">← runs</a></p><section id="live"{live}>{run_fragment(run, embedded=_embedded(runtime))}</section>'
    return page(run.id, body, scripts=("live",))


@router.get("/runs/{run_id}/live", summary="One run's page content, once it changed", responses=NO_RUN | UNCHANGED)
async def run_live(
    run_id: RunIdPath,
    runtime: RuntimeDep,
    seen: Seen = "",
    wait: Wait = 20,
) -> Response:
    """The run page's content when its version differs from ``seen`` (200, with
    ``X-Dara-Version`` and, once the run has ended, ``X-Dara-Final``), or 204 when
    nothing changed within ``wait`` seconds."""

    async def render() -> tuple[str, str, bool]:
        run = await _read(runtime, run_id)
        return version(run), run_fragment(run, embedded=_embedded(runtime)), is_final(run)

    return await changed_fragment(render, seen, wait, until=runtime.draining)


async def _read(runtime: RuntimeDep, run_id: str) -> RunView:
    return await reading.get_run(runtime, run_id, wait=0)


def _embedded(runtime: RuntimeDep) -> bool:
    return runtime.embedded is not None
