"""Long-polling for page fragments: answer as soon as what a page shows has changed.

A page holds the version of what it shows; its script asks again with ``seen=`` that
version, and the server re-reads (every ``POLL_SECONDS``) until the version differs, the
thing has ended, or ``wait`` runs out (204). Plain HTTP requests, so they pass any proxy
(the Databricks Apps one included) and carry the same credentials as the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from html import escape
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import HTMLResponse, Response

#: How often a waiting long-poll re-reads what it watches.
POLL_SECONDS = 0.5
VERSION_HEADER = "X-Dara-Version"
FINAL_HEADER = "X-Dara-Final"

UNCHANGED: dict[int | str, dict[str, Any]] = {204: {"description": "Nothing changed within `wait` seconds."}}

Render = Callable[[], Awaitable[tuple[str, str, bool]]]

#: A long-poll route's query: the version the page shows, and how long to wait for another.
Seen = Annotated[str, Query(max_length=32, description="The version the page shows")]
Wait = Annotated[float, Query(ge=0, le=30, description="Seconds to wait for a change")]


def live_attributes(url: str, version: str, final: bool) -> str:
    """The attributes of a page's live section: where its script long-polls and the
    version it shows. None once final: there is nothing left to wait for."""
    return "" if final else f' data-live="{escape(url)}" data-version="{escape(version)}"'


async def changed_fragment(render: Render, seen: str, wait: float, *, until: asyncio.Event) -> Response:
    """``render()`` gives (version, html, final). Answer it once its version is not
    ``seen`` or it is final; 204 if neither happens within ``wait`` seconds, or once
    ``until`` is set (the service is stopping: the page asks again, of the next process)."""
    deadline = time.monotonic() + wait
    while True:
        current, html, final = await render()
        if current != seen or final:
            headers = {VERSION_HEADER: current, "Cache-Control": "no-store"}
            if final:
                headers[FINAL_HEADER] = "true"
            return HTMLResponse(html, headers=headers)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or until.is_set():
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), timeout=min(POLL_SECONDS, remaining))
