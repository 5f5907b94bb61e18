"""One run as a page: a timeline of its steps and waits with their durations, its
watchers told apart (and described as what they are doing), its Databricks runs with
per-task results, and cancel and repair buttons while it is in flight.

The same fragment is served whole for the first load and again, only when the run
changed, to the page's long-poll (``/ui/runs/{id}/live``), so there is one renderer.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from html import escape
from typing import Any

from app.console.layout import badge, seconds, shown
from app.services.run_status import DatabricksRun, RunView, StepView

ACTIVE = ("running", "waiting")
#: The timeline's SVG bars are this many units wide (the viewBox; CSS scales it).
BAR_UNITS = 1000


def is_final(run: RunView) -> bool:
    return run.status not in ACTIVE


def version(run: RunView) -> str:
    """Changes whenever anything shown but the clock does: status, steps and their states,
    why it is queued, its Databricks runs' states and repair windows."""
    parts = [run.status, *(f"{step.id}={step.state}" for step in run.steps)]
    if run.queued is not None:
        parts.append(f"queued={run.queued.source}:{run.queued.attempts}:{run.queued.life_cycle_state}")
    parts += [f"{dbr.run_id}={dbr.life_cycle_state}:{dbr.repairable_until}" for dbr in run.databricks_runs]
    if not is_final(run):  # and every 10 s while in flight, so the durations shown move on
        parts.append(str(int(run.elapsed_seconds // 10)))
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def run_fragment(run: RunView, *, now: datetime | None = None, embedded: bool = False) -> str:
    """The run page's content. ``embedded``: the workspace has no UI of its own, so
    its runs are shown only on DARA's page of them."""
    now = now or datetime.now(UTC)
    work = [step for step in run.steps if step.kind != "watcher"]
    watchers = [step for step in run.steps if step.kind == "watcher"]
    run_path = f"/runs/{escape(run.id)}"
    # Repair reruns the failed tasks of a Databricks run the run still waits on
    # (DARA_REPAIR_WINDOW); DARA answers why not when there is none. The embedded
    # workspace cannot repair.
    repair = (
        f'<button type="button" class="repair" data-action="{run_path}/repair" data-refused="Not repaired" '
        'data-confirm="Rerun the failed tasks of this run\'s Databricks runs?">Repair failed tasks</button>'
        f"{_repairable(run)}"
        if not embedded
        else ""
    )
    cancel = (
        f'<button type="button" class="cancel" data-action="{run_path}/cancel" data-refused="Not cancelled" '
        'data-confirm="Cancel this run and the Databricks runs it started?">Cancel run</button>'
        f'{repair}<span class="cancel-error" role="alert"></span>'
        if not is_final(run)
        else ""
    )
    outcome = f'<p class="error"><b>Error:</b> {escape(run.error)}</p>' if run.error else shown(run.result)
    done = sum(step.state != "pending" for step in work)
    return (
        f"<h1>{escape(run.id)} {badge(run.status)}{_queued_badge(run)}</h1>"
        f"<p>Pipeline <code>{escape(run.pipeline)}</code> · started by {escape(run.started_by)} · "
        f'<span class="progress">{done} of {len(work)} steps and waits done</span> · '
        f"{seconds(run.elapsed_seconds)} · deadline {run.deadline:%Y-%m-%d %H:%M} UTC · "
        f'<a href="/runs/{escape(run.id)}">JSON</a> · <code>resonate tree {escape(run.id)}</code>'
        f"{_export_link(run)}</p>"
        f"{_queued(run)}{cancel}{outcome}"
        f"<h2>Timeline</h2>{_timeline(run, work, now)}"
        f"{_watchers(run, watchers)}"
        f"{_databricks(run.databricks_runs, embedded)}"
        f"<h2>Parameters</h2>{shown(run.params) or '<p>none</p>'}"
    )


def _queued_badge(run: RunView) -> str:
    return f" {badge('queued')}" if run.queued is not None and not is_final(run) else ""


def _queued(run: RunView) -> str:
    """Why the run waits for room: DARA trying a step again that the workspace refused for
    capacity, or a Databricks run the workspace holds queued."""
    queued = run.queued
    if queued is None or is_final(run):
        return ""
    if queued.source == "capacity":
        tries = f"{queued.attempts} tr{'y' if queued.attempts == 1 else 'ies'} refused"
        since = f" since {queued.since:%H:%M:%S}" if queued.since else ""
        upcoming = f", next at {queued.next_attempt_at:%H:%M:%S} UTC" if queued.next_attempt_at else ""
        what = f"The workspace has no room for step <b>{escape(queued.step or '')}</b> yet: {tries}{since}{upcoming}."
    else:
        what = f"The workspace holds Databricks run {queued.databricks_run_id} {escape(queued.life_cycle_state or '')}."
    return f'<p class="queued"><b>Queued.</b> {what} <span class="hint">{escape(queued.reason)}</span></p>'


def _repairable(run: RunView) -> str:
    until = run.repairable_until
    return f' <span class="repairable">repairable until {until:%Y-%m-%d %H:%M:%S} UTC</span>' if until else ""


def _export_link(run: RunView) -> str:
    return (
        f' · <a href="/ui/exports/{escape(run.id)}">export progress</a>' if run.pipeline == "export_workflows" else ""
    )


def _timeline(run: RunView, steps: list[StepView], now: datetime) -> str:
    if not steps:
        return "<p>No steps yet.</p>"
    end = run.finished_at or now
    span = max((end - run.started_at).total_seconds(), 0.001)
    rows = []
    for number, step in enumerate(steps, 1):
        finished = step.finished_at or (end if is_final(run) else now)
        offset = max((step.started_at - run.started_at).total_seconds(), 0.0)
        duration = max((finished - step.started_at).total_seconds(), 0.0)
        x = min(round(offset / span * BAR_UNITS), BAR_UNITS - 2)
        width = max(min(round(duration / span * BAR_UNITS), BAR_UNITS - x), 2)
        bar = (
            f'<svg class="bar" viewBox="0 0 {BAR_UNITS} 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="{escape(step.kind)} {escape(step.state)}" x="{x}" y="0" width="{width}" height="10"/></svg>'
        )
        taken = seconds(duration) + ("" if step.finished_at else " so far")
        rows.append(
            f'<tr class="step"><td>{number}</td><td><b>{escape(step.name or "")}</b><br><code>{escape(step.id)}</code></td>'
            f"<td>{_kind(step.kind)}</td><td>{badge(step.state, _state(step))}</td>"
            f"<td>+{seconds(offset)}</td><td>{taken}</td><td>{bar}</td><td>{_outcome(step)}</td></tr>"
        )
    return (
        '<table class="timeline"><tr><th>#</th><th>step</th><th>kind</th><th>state</th><th>began</th>'
        f'<th>took</th><th class="barcol">when</th><th>result / error</th></tr>{"".join(rows)}</table>'
    )


def _kind(kind: str) -> str:
    return {"step": "step", "callback": "wait for callback", "sleep": "sleep", "call": "sub-pipeline"}.get(kind, kind)


def _state(step: StepView) -> str:
    if step.state == "pending":
        return "waiting" if step.kind in ("callback", "sleep") else "running"
    return step.state


def _outcome(step: StepView) -> str:
    if step.error:
        return f'<span class="error">{escape(step.error)}</span>'
    if step.result_is_run_result:
        return "<i>the run's result, above</i>"
    tasks = _task_results(step.result)
    return tasks if tasks is not None else shown(step.result)


def _task_results(result: Any) -> str | None:
    """A Databricks run's per-task results (a run report: ``{run_id, result, tasks}``)."""
    if not (isinstance(result, dict) and isinstance(result.get("tasks"), list) and "result" in result):
        return None
    rows = "".join(
        f"<tr><td>{escape(str(task.get('task', '')))}</td><td>{badge(str(task.get('result', '')).lower(), str(task.get('result', '')))}</td>"
        f"<td>{escape(str(task.get('message') or ''))}</td></tr>"
        for task in result["tasks"]
        if isinstance(task, dict)
    )
    return f'<table class="tasks"><tr><th>task</th><th>result</th><th>message</th></tr>{rows}</table>'


#: What a watcher's recorded verdict means (app.watchers.Verdict).
_VERDICTS = {
    "ended": "saw the Databricks run end",
    "settled": "stopped: the wait was settled",
    "rejected": "ended the wait: the Databricks run ended without calling back",
}


def _watchers(run: RunView, watchers: list[StepView]) -> str:
    """Watchers are not steps of the pipeline, and their rows say what they do: a
    watcher that recorded only its first look ("waiting") goes on looking, detached,
    for as long as the run is in flight; one that recorded how the Databricks run ended
    says so."""
    if not watchers:
        return ""
    rows = []
    for step in watchers:
        what = "deadline of a wait" if step.name == "dara.expire_promise" else "Databricks run, for its callback"
        if step.state == "pending":
            state, label = "pending", "watching" if not is_final(run) else "watching the Databricks run to its end"
        elif isinstance(step.result, dict) and isinstance(step.result.get("state"), str):
            state, label = step.state, f"saw the Databricks run end {step.result['state']}"
        elif step.result == "waiting":
            state, label = ("pending", "watching") if not is_final(run) else ("resolved", "stopped: the run ended")
        elif isinstance(step.result, str):
            state, label = step.state, _VERDICTS.get(step.result, step.result)
        else:
            state, label = step.state, step.error or step.state
        rows.append(
            f"<tr><td><code>{escape(step.id)}</code></td><td>{escape(step.name or '')}</td><td>{what}</td>"
            f"<td>{badge(state, label)}</td><td>{step.started_at:%H:%M:%S}</td></tr>"
        )
    return (
        "<h2>Watchers</h2><p>Detached checks that keep a wait from hanging; not counted as steps.</p>"
        '<table class="watchers"><tr><th>promise</th><th>name</th><th>watches</th><th>state</th>'
        f"<th>since</th></tr>{''.join(rows)}</table>"
    )


def _databricks(runs: list[DatabricksRun], embedded: bool) -> str:
    """Each Databricks run: DARA's page of it (state, output, error per task) and, on a
    real workspace, its page there. ``url`` is DARA's own (app.services.run_status.run_link), never a
    value a step or a notebook recorded."""
    if not runs:
        return ""
    items = []
    for dbr in runs:
        ours = f'<a href="/ui/databricks/runs/{dbr.run_id}">Databricks run {dbr.run_id}</a>'
        theirs = (
            f' · <a href="{escape(dbr.url)}" rel="noopener noreferrer">open in the workspace</a>'
            if dbr.url and not embedded
            else ""
        )
        job = f" of job {dbr.job_id}" if dbr.job_id is not None else ""
        state = f" {badge(dbr.life_cycle_state.lower(), dbr.life_cycle_state)}" if dbr.life_cycle_state else ""
        until = f" · repairable until {dbr.repairable_until:%Y-%m-%d %H:%M:%S} UTC" if dbr.repairable_until else ""
        items.append(f"<li>{ours}{job}{state}{theirs}{until}</li>")
    return f"<h2>Databricks runs</h2><ul>{''.join(items)}</ul>"
