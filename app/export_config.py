"""The export config (``config.yml``) as the console edits it: parsed and validated
with every problem placed (``loc``, ``msg``), written back as YAML, generated from
defaults, and loaded from and saved to a workspace file (Workspace API).

YAML comes from users' files, so it is read with a safe loader that also refuses
anchors and aliases: a config needs none, and they are how a small YAML becomes a huge
structure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service.workspace import ExportFormat, ImportFormat
from pydantic import BaseModel, ValidationError

from steps.export_models import ExportConfig, InitialVariables

MAX_CONFIG_BYTES = 512 * 1024


class Problem(BaseModel):
    loc: list[str | int]
    msg: str


@dataclass(frozen=True)
class Checked:
    """A config as parsed: the config when it is valid, else what is wrong and where."""

    config: ExportConfig | None
    problems: list[Problem]


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "anchors and aliases are not allowed here", event.start_mark)
        return super().compose_node(parent, index)


def parse(text: str) -> Checked:
    """Check YAML text as an export config."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        return Checked(None, [Problem(loc=[], msg=f"the config is over {MAX_CONFIG_BYTES} bytes")])
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader, stricter still
    except yaml.YAMLError as exc:
        return Checked(None, [Problem(loc=[], msg=f"not valid YAML: {exc}")])
    if not isinstance(data, dict):
        return Checked(
            None, [Problem(loc=[], msg="the config must be a mapping with workflows, pipelines and initial_variables")]
        )
    return check(data)


def check(data: dict[str, Any]) -> Checked:
    """Check a config given as data (JSON from the page)."""
    try:
        return Checked(ExportConfig.model_validate(data), [])
    except ValidationError as exc:
        return Checked(None, [Problem(loc=list(e["loc"]), msg=e["msg"]) for e in exc.errors()])


def dump(config: ExportConfig) -> str:
    """The config as config.yml: workflows, pipelines, initial_variables, in that order."""
    data = config.model_dump(mode="json")
    ordered = {key: data[key] for key in ("workflows", "pipelines", "initial_variables")}
    return yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True)


def default(start_path: str) -> ExportConfig:
    return ExportConfig(initial_variables=InitialVariables(v_start_path=start_path))


def load(w: WorkspaceClient, path: str) -> str | None:
    """The text of the workspace file at ``path``, or None if there is none."""
    try:
        exported = w.workspace.export(path, format=ExportFormat.RAW)
    except NotFound:
        return None
    return base64.b64decode(exported.content or "").decode("utf-8", "replace")


def save(w: WorkspaceClient, path: str, text: str) -> None:
    """Write ``text`` to the workspace file at ``path`` (its folder made first), replacing it."""
    folder = path.rsplit("/", 1)[0]
    w.workspace.mkdirs(folder)
    w.workspace.import_(path, content=base64.b64encode(text.encode()).decode(), format=ImportFormat.RAW, overwrite=True)


def summary(config: ExportConfig) -> dict[str, Any]:
    """What an export of this config would do, for the page's preview."""
    workflows, pipelines = config.active
    return {
        "start_path": config.initial_variables.v_start_path,
        "jobs": [{"id": str(w.job_id), "name": w.job_name, "export_libraries": w.export_libraries} for w in workflows],
        "pipelines": [
            {"id": p.pipeline_id, "name": p.pipeline_name, "export_libraries": p.export_libraries} for p in pipelines
        ],
        "inactive": len(config.workflows) + len(config.pipelines) - len(workflows) - len(pipelines),
        "total": len(workflows) + len(pipelines),
    }
