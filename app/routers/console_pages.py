"""The console's pages that are forms over the JSON API: start a run, browse the
workspace and export from it. Each is a small shell; its script (app/static) reads and
writes through the same API routes a client would use, so the page can do nothing the
API would not let its user do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse, Response

from app.console.export_view import ACTIVE, export_fragment
from app.console.layout import page
from app.console.live import UNCHANGED, Seen, Wait, changed_fragment, live_attributes
from app.console.run_view import version
from app.dependencies import RuntimeDep
from app.export_progress import ExportProgress, export_progress
from app.routers.answers import NO_RUN
from app.routers.exports import NOT_AN_EXPORT
from app.services import reading
from app.services.run_status import RUN_ID_PATTERN

router = APIRouter(prefix="/ui", tags=["pages"], default_response_class=HTMLResponse)
RunIdPath = Annotated[str, Path(pattern=RUN_ID_PATTERN)]


@router.get("/start", summary="Start a run from a form made from the pipeline's schema")
async def start_page() -> str:
    body = (
        "<h1>Start a run</h1>"
        '<form id="start" novalidate><div class="field"><label for="pipeline">Pipeline</label>'
        '<select id="pipeline" name="pipeline"></select> <span class="hint" id="description"></span></div>'
        '<div class="field"><label for="run-id">Run id <span class="hint">(optional: starting an existing '
        'id shows that run)</span></label><input type="text" id="run-id" name="id" size="40" '
        'pattern="[A-Za-z0-9][A-Za-z0-9._-]{0,127}"><span class="field-error" data-for="id"></span></div>'
        '<fieldset id="params"><legend>Parameters</legend></fieldset>'
        '<p class="error" id="form-error" role="alert"></p>'
        '<button type="submit" class="primary" id="submit">Start run</button></form>'
    )
    return page("start a run", body, scripts=("schema_form", "start"))


@router.get("/workspace", summary="Browse the workspace's jobs and pipelines; select and export them")
async def workspace_page() -> str:
    body = (
        "<h1>Workspace</h1>"
        '<div class="cols"><section id="browser">'
        '<p class="tabs"><a href="?kind=jobs" data-kind="jobs">Jobs</a> '
        '<a href="?kind=pipelines" data-kind="pipelines">Lakeflow pipelines</a></p>'
        '<form id="filters" class="toolbar">'
        '<input type="search" id="q" placeholder="Fuzzy search by name or id" size="28" aria-label="Search">'
        '<select id="schedule" aria-label="Schedule" data-for="jobs"><option value="any">any schedule</option>'
        '<option value="scheduled">scheduled</option><option value="unscheduled">unscheduled</option></select>'
        '<input type="text" id="tag" placeholder="tag key=value" size="14" aria-label="Tag" data-for="jobs">'
        '<select id="state" aria-label="State" data-for="pipelines"><option value="">any state</option>'
        + "".join(f'<option value="{s}">{s}</option>' for s in ("IDLE", "RUNNING", "STARTING", "FAILED", "DELETED"))
        + "</select>"
        '<input type="text" id="creator" placeholder="creator" size="18" aria-label="Creator"></form>'
        '<p class="error" id="browse-error" role="alert"></p>'
        '<table id="items"><thead></thead><tbody></tbody></table>'
        '<p class="toolbar"><button type="button" id="prev">← Previous</button><span id="page-info"></span>'
        '<button type="button" id="next">Next →</button></p>'
        '<div id="detail" class="detail" hidden></div></section>'
        '<section id="config"><h2>Export config</h2>'
        '<div class="field"><label for="config-path">Config file in the workspace</label>'
        '<input type="text" id="config-path" size="48"> <button type="button" id="load">Load</button> '
        '<button type="button" id="defaults">Generate defaults</button></div>'
        '<div class="field"><label for="start-path">Export to (<code>v_start_path</code>)</label>'
        '<input type="text" id="start-path" size="48"></div>'
        '<div class="field"><label for="yaml">config.yml</label><textarea id="yaml" rows="16" spellcheck="false"></textarea>'
        '<span id="config-status" role="status"></span></div>'
        '<h3>Will export</h3><div id="preview"></div>'
        '<p class="toolbar"><button type="button" id="save">Save config</button>'
        '<button type="button" class="primary" id="export">Start export</button></p>'
        '<p id="config-message" role="alert"></p></section></div>'
    )
    return page("workspace", body, scripts=("workspace_config", "workspace"))


@router.get("/exports/{run_id}", summary="An export's progress, live", responses=NO_RUN | NOT_AN_EXPORT)
async def export_page(run_id: RunIdPath, runtime: RuntimeDep) -> str:
    progress, run_version = await _export(runtime, run_id)
    live = live_attributes(f"/ui/exports/{run_id}/live", run_version, progress.status not in ACTIVE)
    return page(
        f"export {run_id}", f'<section id="live"{live}>{export_fragment(progress)}</section>', scripts=("live",)
    )


@router.get(
    "/exports/{run_id}/live",
    summary="An export's page content, once it changed",
    responses=NO_RUN | NOT_AN_EXPORT | UNCHANGED,
)
async def export_live(
    run_id: RunIdPath,
    runtime: RuntimeDep,
    seen: Seen = "",
    wait: Wait = 20,
) -> Response:
    async def render() -> tuple[str, str, bool]:
        progress, run_version = await _export(runtime, run_id)
        return run_version, export_fragment(progress), progress.status not in ACTIVE

    return await changed_fragment(render, seen, wait, until=runtime.draining)


async def _export(runtime: RuntimeDep, run_id: str) -> tuple[ExportProgress, str]:
    """The export's progress and the version of the run it is read from (one read)."""
    run = await reading.get_run(runtime, run_id, wait=0)
    try:
        return export_progress(run, datetime.now(UTC)), version(run)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
