"""An export run as a page: items done of the total with a progress bar, an estimate
of the time left from the items' measured times, and each item with its time, its
files in the workspace and a link to it in the workspace browser."""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from app.console.layout import badge, seconds
from app.export_progress import ExportProgress, ItemProgress

ACTIVE = ("running", "waiting")


def export_fragment(progress: ExportProgress) -> str:
    running = progress.status in ACTIVE
    cancel = (
        f'<button type="button" class="cancel" data-action="/runs/{escape(progress.run_id)}/cancel" data-refused="Not cancelled" '
        'data-confirm="Cancel this export?">Cancel export</button>'
        '<span class="cancel-error" role="alert"></span>'
        if running
        else ""
    )
    finished = progress.done + progress.failed
    estimate = ""
    if progress.mean_item_seconds is not None:
        estimate = f" · {seconds(progress.mean_item_seconds)} per item"
        if progress.remaining_seconds is not None and running:
            estimate += f' · <span class="eta">about {seconds(progress.remaining_seconds)} left</span>'
    failed = f' · <span class="error">{progress.failed} failed</span>' if progress.failed else ""
    rows = "".join(_row(item) for item in progress.items)
    return (
        f"<h1>Export {escape(progress.run_id)} {badge(progress.status)}</h1>"
        f'<p><progress class="meter" max="{max(progress.total, 1)}" value="{finished}"></progress></p>'
        f'<p><b class="counts">{progress.done} of {progress.total} items done</b>{failed}{estimate} · '
        f"{seconds(progress.elapsed_seconds)} so far · into <code>{escape(progress.start_path)}</code></p>"
        f'<p><a href="/ui/runs/{escape(progress.run_id)}">the run</a> · '
        f'<a href="/exports/{escape(progress.run_id)}">JSON</a> · <a href="/ui/workspace">workspace</a></p>{cancel}'
        '<table class="items"><tr><th>item</th><th>libraries</th><th>state</th><th>took</th><th>written</th></tr>'
        f"{rows}</table>"
    )


def _row(item: ItemProgress) -> str:
    browse = "/ui/workspace?" + urlencode({"kind": "jobs" if item.kind == "job" else "pipelines", "open": item.id})
    written = "".join(f"<li><code>{escape(path)}</code></li>" for path in item.files)
    skipped = "".join(f'<li class="hint">skipped {escape(reason)}</li>' for reason in item.skipped)
    detail = f"<ul>{written}{skipped}</ul>" if written or skipped else ""
    if item.error:
        detail += f'<span class="error">{escape(item.error)}</span>'
    took = seconds(item.seconds) if item.seconds is not None else ""
    return (
        f'<tr class="item" data-state="{item.state}"><td>{item.kind} <a href="{escape(browse)}">{escape(item.name)}</a>'
        f"<br><code>{escape(item.id)}</code></td><td>{'yes' if item.export_libraries else 'no'}</td>"
        f"<td>{badge(item.state)}</td><td>{took}</td><td>{detail}</td></tr>"
    )
