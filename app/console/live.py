"""Long-polling for page fragments: answer as soon as what a page shows has changed.

A page holds the version of what it shows; its script asks again with ``seen=`` that
version, and the server re-reads (every ``POLL_SECONDS``) until the version differs, the
thing has ended, or ``wait`` runs out (204). Plain HTTP requests, so they pass any proxy
(the Databricks Apps one included) and carry the same credentials as the page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.responses import HTMLResponse, Response

#: How often a waiting long-poll re-reads what it watches.
POLL_SECONDS = 0.5
VERSION_HEADER = "X-Dara-Version"
FINAL_HEADER = "X-Dara-Final"

UNCHANGED: dict[int | str, dict[str, Any]] = {204: {"description": "Nothing changed within `wait` seconds."}}

Render = Callable[[], Awaitable[tuple[str, str, bool]]]


async def changed_fragment(render: Render, seen: str, wait: float) -> Response:
    """``render()`` gives (version, html, final). Answer it once its version is not
    ``seen`` or it is final; 204 if neither happens within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        current, html, final = await render()
        if current != seen or final:
            headers = {VERSION_HEADER: current, "Cache-Control": "no-store"}
            if final:
                headers[FINAL_HEADER] = "true"
            return HTMLResponse(html, headers=headers)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        await asyncio.sleep(min(POLL_SECONDS, remaining))
