"""``notebook_output.result`` in the embedded workspace's ``runs/get-output``.

On Databricks, the value a notebook passes to ``dbutils.notebook.exit`` is served as
``notebook_output.result`` of its task's run output; DARA resolves a wait with it when
a run ends without calling back (app.exit_values). brickhouse 0.1.0 runs
``dbutils.notebook.exit`` but only prints the value: its notebook worker's last line
of stdout is ``NOTEBOOK_EXIT=<value>``, which get-output serves inside ``logs``.
:func:`serve_exit_values` moves that line out of ``logs`` into ``notebook_output``.

The line is trusted only as the very last line of the logs, where the worker writes it
after everything the notebook printed, so a value spanning several lines is not
recognised here (``json.dumps`` never writes one). A notebook could print such a line
last itself; it could as well call ``dbutils.notebook.exit``, so that gains it nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from brickhouse.api.catalog import ApiResponse

RUNS_GET_OUTPUT = "/api/2.2/jobs/runs/get-output"
#: How brickhouse's notebook worker prints the exit value (brickhouse.runtime.notebook_worker).
EXIT_LINE = "NOTEBOOK_EXIT="


def serve_exit_values(jobs_api: Any) -> None:
    """Answer runs/get-output with ``notebook_output.result`` when the notebook exited with a value."""
    dispatch = jobs_api.dispatch

    def dispatch_with_exit_value(method: str, target: str, body: dict[str, object] | None = None) -> ApiResponse | None:
        response = dispatch(method, target, body)
        if (
            method == "GET"
            and urlsplit(target).path == RUNS_GET_OUTPUT
            and response is not None
            and response.status == 200
            and isinstance(response.payload, dict)
        ):
            with_exit_value(response.payload)
        return response

    jobs_api.dispatch = dispatch_with_exit_value


def with_exit_value(payload: dict[str, Any]) -> None:
    """Move a trailing ``NOTEBOOK_EXIT=`` line of ``payload["logs"]`` into ``notebook_output``.

    Logs cut short (``logs_truncated``) may have cut the value short too: it is then
    marked ``truncated``, as Databricks marks a value it cut.
    """
    logs = payload.get("logs")
    if not isinstance(logs, str):
        return
    text = logs.removesuffix("\n")
    start = text.rfind(EXIT_LINE)
    if start < 0 or (start > 0 and text[start - 1] != "\n") or "\n" in text[start:]:
        return
    payload["logs"] = logs[:start]
    payload["notebook_output"] = {
        "result": text[start + len(EXIT_LINE) :],
        "truncated": bool(payload.get("logs_truncated")),
    }
