"""The embedded workspace's notebook worker: brickhouse's, plus the notebook's exception.

brickhouse runs each notebook task as ``python <worker script> <artifact path>`` and,
when a cell raises, its worker prints only "notebook execution failed
(CellExecutionError)": the exception itself stays in the executed notebook, a
temporary file that is gone once the task ends. Databricks serves that exception in
``runs/get-output`` (``error``, ``error_trace``), and DARA shows it in the failed run.

So the embedded workspace runs this script instead (app.workspace.embedded_run_output
points brickhouse at it). It runs brickhouse's worker unchanged and, if the notebook
failed, appends the exception to the worker's stderr as a block the embedded layer
parses back out (:data:`MARKER`). stderr, because brickhouse keeps it as the attempt's
output and redacts secret values in it -- a block of raw lines, not JSON, so that
redaction still finds them.

Runs as a script in a fresh interpreter with only brickhouse's environment: it imports
the standard library and brickhouse, never ``app``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# A script's own folder comes first on sys.path; it holds DARA modules (client.py, ...)
# that must never shadow what brickhouse and Jupyter import.
if __name__ == "__main__" and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import json  # after the path fix above

from brickhouse.runtime import notebook_worker

#: Starts the block: ``MARKER <value lines> <trace lines> <exception type>``, then those lines.
MARKER = "<<<dara-notebook-exception>>>"
#: Bounds on what one exception adds to stderr, whatever the notebook raised.
MAX_VALUE_LINES, MAX_TRACE_LINES, MAX_LINE_CHARS, MAX_TYPE_CHARS = 20, 50, 1000, 200


def main() -> None:
    try:
        notebook_worker.main()
    except SystemExit as exit_:
        if exit_.code not in (None, 0) and len(sys.argv) == 2:
            report_exception(Path(sys.argv[1]))
        raise


def report_exception(artifact: Path) -> None:
    """Write the first exception in the executed notebook to stderr; nothing if none."""
    try:
        document = json.loads(artifact.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError):
        return  # the notebook never ran (brickhouse said why on stderr already)
    error = first_error(document)
    if error is None:
        return
    name = _line(error.get("ename"))[:MAX_TYPE_CHARS] or "Exception"
    value = [_line(line) for line in _text(error.get("evalue")).splitlines()[:MAX_VALUE_LINES]]
    trace = [_line(line) for entry in error.get("traceback") or [] for line in _text(entry).splitlines()][
        -MAX_TRACE_LINES:
    ]
    block = [f"{MARKER} {len(value)} {len(trace)} {name}", *value, *trace]
    sys.stderr.write("\n" + "\n".join(block) + "\n")
    sys.stderr.flush()


def first_error(document: object) -> dict | None:
    """The first ``error`` output of an nbformat document (execution stops at it)."""
    cells = document.get("cells") if isinstance(document, dict) else None
    for cell in cells if isinstance(cells, list) else []:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for output in outputs if isinstance(outputs, list) else []:
            if isinstance(output, dict) and output.get("output_type") == "error":
                return output
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _line(value: object) -> str:
    # One physical line, so the block's line counts stay true.
    return "".join(ch if ch.isprintable() or ch == "\x1b" else " " for ch in _text(value))[:MAX_LINE_CHARS]


if __name__ == "__main__":
    main()
