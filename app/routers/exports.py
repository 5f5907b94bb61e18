"""Export configs (config.yml in the workspace) and durable exports of what they select.

An export is an ``export_workflows`` run (pipelines/export_workflows.py): started here
from the saved config, or with ``POST /runs`` and the config as its parameters.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from databricks.sdk.errors import DatabricksError
from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from app import export_config
from app.dependencies import RuntimeDep
from app.export_config import Problem
from app.export_progress import EXPORT_PIPELINE, ExportProgress, export_progress
from app.routers.answers import NO_RUN
from app.security import CurrentUser, audit, audit_logger
from app.services import reading, starting
from app.services.run_status import RUN_ID_PATTERN

router = APIRouter(prefix="/exports", tags=["exports"])

CONFIG_PATH = r"^/(Workspace|Users|Shared)/([^/\x00]+/)*[^/\x00]+\.ya?ml$"
ConfigPath = Annotated[
    str | None,
    Query(max_length=1024, pattern=CONFIG_PATH, description="Workspace file; default DARA_EXPORT_CONFIG_PATH."),
]
WORKSPACE_FAILED: dict[int | str, dict[str, Any]] = {502: {"description": "The workspace failed to answer."}}
NOT_AN_EXPORT: dict[int | str, dict[str, Any]] = {409: {"description": "The run is not an export."}}


class ConfigView(BaseModel):
    path: str
    exists: bool = Field(description="Whether the file is in the workspace (false: a default, not saved yet).")
    yaml: str
    valid: bool
    problems: list[Problem]
    config: dict[str, Any] | None
    summary: dict[str, Any] | None = Field(description="What an export of it would do; null while invalid.")


class ConfigCheck(BaseModel):
    """Give ``yaml`` (the editor's text) or ``config`` (the page's selection as data)."""

    yaml: str | None = Field(default=None, max_length=export_config.MAX_CONFIG_BYTES)
    config: dict[str, Any] | None = None


class ConfigSave(BaseModel):
    path: str | None = Field(default=None, max_length=1024, pattern=CONFIG_PATH)
    yaml: str = Field(max_length=export_config.MAX_CONFIG_BYTES)


class ExportStart(BaseModel):
    path: str | None = Field(default=None, max_length=1024, pattern=CONFIG_PATH)


class ExportStarted(BaseModel):
    run_id: str
    page: str = Field(description="The console's page of the export.")
    total: int


@router.get("/config", response_model=ConfigView, responses=WORKSPACE_FAILED)
async def load_config(runtime: RuntimeDep, path: ConfigPath = None) -> ConfigView:
    """The export config at ``path``, checked; a default one (``exists: false``) if none is saved."""
    where = path or runtime.settings.export_config_path
    text = await _workspace(export_config.load, runtime.workspace, where)
    if text is None:
        return _view(where, export_config.dump(export_config.default(runtime.settings.export_start_path)), exists=False)
    return _view(where, text, exists=True)


@router.get("/config/default", response_model=ConfigView)
async def default_config(runtime: RuntimeDep, path: ConfigPath = None) -> ConfigView:
    """A new config: nothing selected, exports going to DARA_EXPORT_START_PATH."""
    text = export_config.dump(export_config.default(runtime.settings.export_start_path))
    return _view(path or runtime.settings.export_config_path, text, exists=False)


@router.post("/config/check", response_model=ConfigView)
async def check_config(runtime: RuntimeDep, body: ConfigCheck) -> ConfigView:
    """Validate a config as YAML text or as data; with data, also its YAML (for the editor)."""
    where = runtime.settings.export_config_path
    if body.config is not None:
        checked = export_config.check(body.config)
        if checked.config is None:
            return ConfigView(
                path=where, exists=False, yaml="", valid=False, problems=checked.problems, config=None, summary=None
            )
        return _view(where, export_config.dump(checked.config), exists=False)
    return _view(where, body.yaml or "", exists=False)


@router.put(
    "/config",
    response_model=ConfigView,
    responses={422: {"description": "The config is not valid; nothing was saved."}, **WORKSPACE_FAILED},
)
async def save_config(runtime: RuntimeDep, body: ConfigSave, user: CurrentUser) -> ConfigView:
    """Check the config and save it to the workspace file; an invalid one is not saved (422)."""
    where = body.path or runtime.settings.export_config_path
    view = _view(where, body.yaml, exists=True)
    if not view.valid:
        raise HTTPException(422, [problem.model_dump() for problem in view.problems])
    await _workspace(export_config.save, runtime.workspace, where, body.yaml)
    audit_logger.info("%s saved the export config %s", user, where)
    return view


@router.post(
    "",
    response_model=ExportStarted,
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No config is saved there."},
        422: {"description": "The saved config is not valid, or selects nothing."},
        **WORKSPACE_FAILED,
    },
)
async def start_export(runtime: RuntimeDep, user: CurrentUser, body: ExportStart | None = None) -> ExportStarted:
    """Export what the saved config selects, as a durable ``export_workflows`` run."""
    where = (body.path if body else None) or runtime.settings.export_config_path
    text = await _workspace(export_config.load, runtime.workspace, where)
    if text is None:
        raise HTTPException(404, f"no export config at {where}; save one first (PUT /exports/config)")
    checked = export_config.parse(text)
    if checked.config is None:
        raise HTTPException(
            422,
            f"the config at {where} is not valid: "
            + "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in checked.problems),
        )
    summary = export_config.summary(checked.config)
    if summary["total"] == 0:
        raise HTTPException(422, f"the config at {where} selects no active job or pipeline; select some and save it")
    run_id = f"export-{uuid.uuid4().hex[:12]}"
    run, _ = await starting.start(
        runtime, run_id, EXPORT_PIPELINE, checked.config.model_dump(mode="json"), started_by=user, by_caller=False
    )
    audit(user, "started", run.id, run.pipeline)
    return ExportStarted(run_id=run.id, page=f"/ui/exports/{run.id}", total=summary["total"])


@router.get("/{run_id}", response_model=ExportProgress, responses=NO_RUN | NOT_AN_EXPORT)
async def get_export(runtime: RuntimeDep, run_id: Annotated[str, Path(pattern=RUN_ID_PATTERN)]) -> ExportProgress:
    """An export's progress: items done of the total, each item's time, and an estimate of the rest."""
    return await read_export(runtime, run_id)


async def read_export(runtime: RuntimeDep, run_id: str) -> ExportProgress:
    run = await reading.get_run(runtime, run_id, wait=0)
    try:
        return export_progress(run, datetime.now(UTC))
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None


def _view(path: str, text: str, *, exists: bool) -> ConfigView:
    checked = export_config.parse(text)
    config = checked.config
    return ConfigView(
        path=path,
        exists=exists,
        yaml=text,
        valid=config is not None,
        problems=checked.problems,
        config=config.model_dump(mode="json") if config else None,
        summary=export_config.summary(config) if config else None,
    )


async def _workspace(function: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(function, *args)
    except DatabricksError as exc:
        raise HTTPException(502, f"the workspace failed: {exc}") from None
