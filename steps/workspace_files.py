"""Step that puts a task graph's files into the workspace.

Safe to run again: every import overwrites, and ``mkdirs`` of an existing folder is a
no-op, so a step re-executed after a crash converges on the same files.
"""

from __future__ import annotations

import base64
import posixpath
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

#: First line of a notebook exported in source format, by language.
NOTEBOOK_HEADERS = {
    "# Databricks notebook source": Language.PYTHON,
    "-- Databricks notebook source": Language.SQL,
    "// Databricks notebook source": Language.SCALA,
}


def upload_task_files(w: WorkspaceClient, folder: str, files: dict[str, str]) -> dict[str, str]:
    """Import ``files`` (path relative to ``folder`` -> workspace path); returns them as imported.

    A file whose first line is a source-format notebook header is imported as a
    notebook (SOURCE, with its language); a ``.ipynb`` as a Jupyter notebook; anything
    else -- Python files, SQL files -- as a workspace file (RAW), byte for byte. RAW
    rather than AUTO because AUTO strips the extension of whatever it takes for a
    notebook, and the job must find the file at the path it was given.
    """
    base = Path(folder)
    contents = {}
    for local in files:
        path = base / local
        try:
            contents[local] = path.read_bytes()
        except FileNotFoundError:
            msg = f"task file {local!r} is not in {base.resolve()}; fix the task list or add it"
            raise FileNotFoundError(msg) from None
    for parent in sorted({posixpath.dirname(remote) for remote in files.values()}):
        w.workspace.mkdirs(parent)
    for local, remote in files.items():
        content = contents[local]
        fmt, language = import_format(local, content)
        w.workspace.import_(
            path=remote,
            content=base64.b64encode(content).decode("ascii"),
            format=fmt,
            language=language,
            overwrite=True,
        )
    return dict(files)


def import_format(name: str, content: bytes) -> tuple[ImportFormat, Language | None]:
    """How Databricks should take a file: as a notebook, or as a plain workspace file."""
    if name.casefold().endswith(".ipynb"):
        return ImportFormat.JUPYTER, None
    first_line = content.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    language = NOTEBOOK_HEADERS.get(first_line.lstrip("\ufeff"))
    if language is not None:
        return ImportFormat.SOURCE, language
    return ImportFormat.RAW, None
