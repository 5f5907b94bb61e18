"""Steps that export one job or one Lakeflow pipeline into the workspace: its
definition as JSON and as bundle resource YAML and, when asked, its notebooks and
library files. Each is one durable step of ``export_workflows``, and idempotent: it
overwrites what an earlier attempt wrote.

Layout under the start path: ``jobs/<name>-<id>/`` or ``pipelines/<name>-<id>/``, each
with ``<kind>.json``, ``resources/<name>.<kind>.yml`` and ``src/`` for what it runs.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language

from steps.workspace_items import library_paths, pipeline_library_path, task_target

#: Workspace files a library path may name (others -- dbfs:, Maven, PyPI -- are recorded, not copied).
COPYABLE = re.compile(r"^/(Workspace|Users|Shared)/")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_SUFFIX = {Language.PYTHON: ".py", Language.SQL: ".sql", Language.SCALA: ".scala", Language.R: ".r"}


@dataclass(frozen=True)
class ExportedItem:
    kind: str
    id: str
    name: str
    folder: str
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def export_job(w: WorkspaceClient, job_id: int, export_libraries: bool, start_path: str) -> ExportedItem:
    """Write job ``job_id``'s definition (and its notebooks and library files) under ``start_path``."""
    job = w.jobs.get(job_id)
    settings = job.settings.as_dict() if job.settings else {}
    name = settings.get("name") or f"job-{job_id}"
    key = slug(name)
    folder = f"{start_path}/jobs/{key}-{job_id}"
    files: list[str] = []
    skipped: list[str] = []
    if export_libraries:
        for task in job.settings.tasks or [] if job.settings else []:
            sources = [task_target(task)[1]] if task_target(task)[0] in ("notebook", "python file", "sql") else []
            for source in [*sources, *library_paths(task.libraries or [])]:
                if source:
                    copied = copy_source(w, source, f"{folder}/src")
                    (files if copied else skipped).append(copied or f"{source}: not a workspace file")
    files += write_definition(w, folder, "job", key, settings)
    return ExportedItem("job", str(job_id), name, folder, files, skipped)


def export_pipeline(w: WorkspaceClient, pipeline_id: str, export_libraries: bool, start_path: str) -> ExportedItem:
    """Write Lakeflow pipeline ``pipeline_id``'s spec (and its source files) under ``start_path``."""
    found = w.pipelines.get(pipeline_id)
    spec = found.spec.as_dict() if found.spec else {}
    spec.pop("id", None)  # the workspace's, not part of a definition to deploy elsewhere
    name = found.name or spec.get("name") or pipeline_id
    key = slug(name)
    folder = f"{start_path}/pipelines/{key}-{pipeline_id}"
    files: list[str] = []
    skipped: list[str] = []
    if export_libraries and found.spec:
        for library in found.spec.libraries or []:
            source = pipeline_library_path(library)
            if source:
                copied = copy_source(w, source, f"{folder}/src")
                (files if copied else skipped).append(copied or f"{source}: not a workspace file")
    files += write_definition(w, folder, "pipeline", key, spec)
    return ExportedItem("pipeline", pipeline_id, name, folder, files, skipped)


def write_definition(w: WorkspaceClient, folder: str, kind: str, key: str, definition: dict[str, Any]) -> list[str]:
    """``<kind>.json``, and ``resources/<key>.<kind>.yml`` as a bundle resource
    (``resources: {jobs|pipelines: {key: definition}}``); the paths written."""
    bundle = {"resources": {f"{kind}s": {key: definition}}}
    return [
        write(w, f"{folder}/{kind}.json", json.dumps(definition, indent=2, sort_keys=True)),
        write(w, f"{folder}/resources/{key}.{kind}.yml", yaml.safe_dump(bundle, sort_keys=False)),
    ]


def copy_source(w: WorkspaceClient, source: str, into: str) -> str | None:
    """Copy a workspace notebook or file into folder ``into``; its new path, or None if
    ``source`` is not a workspace path (a library from dbfs:, a volume or a registry)."""
    if not COPYABLE.match(source):
        return None
    name = PurePosixPath(source).name
    if not PurePosixPath(name).suffix:  # a notebook: name it for its language
        try:
            language = w.workspace.get_status(source).language
        except NotFound:
            language = None
        name += _SUFFIX.get(language, ".py") if language else ".py"
    exported = w.workspace.export(source, format=ExportFormat.AUTO)
    return write(w, f"{into}/{name}", base64.b64decode(exported.content or ""))


def write(w: WorkspaceClient, path: str, content: str | bytes) -> str:
    """Put a file at ``path`` in the workspace (its folder made first), overwriting it."""
    data = content.encode() if isinstance(content, str) else content
    w.workspace.mkdirs(str(PurePosixPath(path).parent))
    w.workspace.import_(path, content=base64.b64encode(data).decode(), format=ImportFormat.RAW, overwrite=True)
    return path


def slug(name: str) -> str:
    """A name fit for a file name and a bundle resource key."""
    return _SLUG.sub("_", name).strip("._") or "unnamed"
