"""The frame every console page shares, and the small HTML helpers its pages use.

Pages are rendered here, on the server, with every value escaped; the scripts they
load (app/static) only fetch more of the same HTML or JSON, so nothing a run recorded
is ever turned into markup by a browser.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from app.console.assets import CONSOLE_ASSETS, DOCS_ASSETS

NAV = (("/ui", "Runs"), ("/ui/start", "Start a run"), ("/ui/workspace", "Workspace"), ("/docs", "API docs"))


def page(title: str, body: str, *, scripts: tuple[str, ...] = ()) -> str:
    """A whole page: the shared stylesheet, the navigation, ``body``, and ``scripts``
    (names of files in app/static, without ``.js``), loaded deferred."""
    tags = "".join(f'<script src="{CONSOLE_ASSETS}/{name}.js" defer></script>' for name in ("common", *scripts))
    nav = " ".join(f'<a href="{href}">{label}</a>' for href, label in NAV)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · DARA</title>"
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="{DOCS_ASSETS}/favicon.png">'
        f'<link rel="stylesheet" href="{CONSOLE_ASSETS}/console.css">{tags}</head>'
        f"<body><nav><b>DARA</b> {nav}</nav><main>{body}</main></body></html>"
    )


def badge(state: str, label: str | None = None) -> str:
    return f'<span class="s {escape(state)}">{escape(label or state)}</span>'


def shown(value: Any) -> str:
    return "" if value is None else f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"


def seconds(value: float) -> str:
    """A duration as people read it: 0.4 s, 12 s, 3 min 05 s, 2 h 01 min."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def data_block(element_id: str, value: Any) -> str:
    """JSON for a page's script to read: a data block, which CSP does not run, with
    ``<`` escaped so that no value can close it."""
    text = json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'
