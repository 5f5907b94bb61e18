"""Status pages for people: recent runs, and one run with its steps.

Plain server-rendered HTML over the same reads as the JSON API (so nothing here can
disagree with ``GET /runs/{id}``), refreshing itself while a run is in flight.
"""

from __future__ import annotations

import json
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import HTMLResponse

from app.dependencies import RuntimeDep
from app.routers.answers import NO_RUN
from app.runs import RUN_ID_PATTERN, RunView, list_runs, read_run

router = APIRouter(prefix="/ui", tags=["pages"], default_response_class=HTMLResponse)

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#1d2330}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{font-weight:600;color:#566}code,pre{font:12px ui-monospace,monospace}pre{white-space:pre-wrap;margin:0;max-height:12rem;overflow:auto}
.s{display:inline-block;padding:0 .5rem;border-radius:.6rem;font-size:12px;background:#eef}
.done,.resolved{background:#dfd}.failed,.rejected,.timed_out,.rejected_timedout{background:#fdd}.cancelled,.rejected_canceled{background:#eee}
a{color:#2456c8}
"""


def page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)} · DARA</title>{meta}"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def badge(state: str) -> str:
    return f'<span class="s {escape(state)}">{escape(state)}</span>'


def shown(value: Any) -> str:
    return "" if value is None else f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"


@router.get("", summary="Recent runs")
async def runs_page(runtime: RuntimeDep) -> str:
    recent = await list_runs(runtime.resonate, runtime.run_index, limit=50, workspace_host=runtime.workspace_host)
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


@router.get("/runs/{run_id}", summary="One run", responses=NO_RUN)
async def run_page(run_id: Annotated[str, Path(pattern=RUN_ID_PATTERN)], runtime: RuntimeDep) -> str:
    run = await read_run(runtime.resonate, run_id, workspace_host=runtime.workspace_host)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return page(run.id, _run_body(run), refresh=run.status in ("running", "waiting"))


def _run_body(run: RunView) -> str:
    steps = "".join(
        f"<tr><td><code>{escape(step.id)}</code></td><td>{escape(step.name or '')}</td><td>{step.kind}</td>"
        f"<td>{badge(step.state)}</td><td>{step.started_at:%H:%M:%S}</td>"
        f"<td>{f'{step.finished_at:%H:%M:%S}' if step.finished_at else ''}</td>"
        f"<td>{escape(step.error) if step.error else shown(step.result)}</td></tr>"
        for step in run.steps
    )
    # dbr.url is DARA's own (app.runs.run_link: the workspace host and two integers),
    # never a value a step or a notebook recorded.
    links = "".join(
        f'<li><a href="{escape(dbr.url)}" rel="noopener noreferrer">Databricks run {dbr.run_id}</a></li>'
        if dbr.url
        else f"<li>Databricks run {dbr.run_id}</li>"
        for dbr in run.databricks_runs
    )
    outcome = f"<p><b>Error:</b> {escape(run.error)}</p>" if run.error else shown(run.result)
    return (
        f'<p><a href="/ui">← runs</a></p><h1>{escape(run.id)} {badge(run.status)}</h1>'
        f"<p>Pipeline <code>{escape(run.pipeline)}</code> · started by {escape(run.started_by)} · "
        f"{run.progress.done}/{run.progress.seen} done · "
        f"{run.elapsed_seconds:.1f} s · deadline {run.deadline:%Y-%m-%d %H:%M} UTC · "
        f'<a href="/runs/{escape(run.id)}">JSON</a> · <code>resonate tree {escape(run.id)}</code></p>'
        f"{outcome}<h2>Parameters</h2>{shown(run.params)}"
        f"{f'<h2>Databricks</h2><ul>{links}</ul>' if links else ''}"
        "<h2>Steps</h2><table><tr><th>promise</th><th>name</th><th>kind</th><th>state</th>"
        f"<th>started</th><th>finished</th><th>result / error</th></tr>{steps}</table>"
    )
