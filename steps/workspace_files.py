"""Step that puts a task graph's files into the workspace.

Safe to run again: every import overwrites, and ``mkdirs`` of an existing folder is a
no-op, so a step re-executed after a crash converges on the same files.
"""

from __future__ import annotations

import base64
import posixpath

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from steps.retryable import DATABRICKS, retried
from steps.task_graph_root import TaskGraphRoot, WorkspaceRoot

#: First line of a notebook exported in source format, by language.
NOTEBOOK_HEADERS = {
    "# Databricks notebook source": Language.PYTHON,
    "-- Databricks notebook source": Language.SQL,
    "// Databricks notebook source": Language.SCALA,
}


@retried(DATABRICKS)
def upload_task_files(
    w: WorkspaceClient,
    root: TaskGraphRoot,
    workspace: WorkspaceRoot,
    folder: str,
    files: dict[str, str],
) -> dict[str, str]:
    """Import ``files`` (path relative to ``folder`` -> workspace path); returns them as imported.

    ``folder`` is relative to the task-graph root and every file is read through it, so
    neither ``..`` nor a symlink can make the step read outside DARA_JOBS_ROOT; every
    workspace path must lie under DARA_NOTEBOOK_DIR. Both are checked before any call.

    A file whose first line is a source-format notebook header is imported as a
    notebook (SOURCE, with its language); a ``.ipynb`` as a Jupyter notebook; anything
    else -- Python files, SQL files -- as a workspace file (RAW), byte for byte. RAW
    rather than AUTO because AUTO strips the extension of whatever it takes for a
    notebook, and the job must find the file at the path it was given.
    """
    targets = {local: workspace.check(remote, f"workspace path of {local[:200]!r}") for local, remote in files.items()}
    contents = {local: root.read(folder, local) for local in files}
    for parent in sorted({posixpath.dirname(remote) for remote in targets.values()}):
        w.workspace.mkdirs(parent)
    for local, remote in targets.items():
        content = contents[local]
        fmt, language = import_format(local, content)
        w.workspace.import_(
            path=remote,
            content=base64.b64encode(content).decode("ascii"),
            format=fmt,
            language=language,
            overwrite=True,
        )
    return targets


def import_format(name: str, content: bytes) -> tuple[ImportFormat, Language | None]:
    """How Databricks should take a file: as a notebook, or as a plain workspace file."""
    if name.casefold().endswith(".ipynb"):
        return ImportFormat.JUPYTER, None
    first_line = content.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    language = NOTEBOOK_HEADERS.get(first_line.lstrip("\ufeff"))
    if language is not None:
        return ImportFormat.SOURCE, language
    return ImportFormat.RAW, None
