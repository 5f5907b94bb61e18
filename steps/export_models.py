"""The export config (``config.yml``): which jobs and Lakeflow pipelines to export,
whether with their notebooks and libraries, and where to (``initial_variables``).

The same shape the workflow manager users know, validated; it is also, as it stands,
the parameters of the ``export_workflows`` pipeline.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Absolute workspace paths, without climbing out of where they say.
WORKSPACE_PATH = r"^/(Workspace|Users|Shared|Volumes)(/[^/\x00]+)+/?$"
PIPELINE_ID = r"^[A-Za-z0-9-]{1,64}$"


class ExportWorkflow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_name: str = Field(min_length=1, max_length=4096)
    job_id: int = Field(ge=1, le=2**63 - 1)
    is_existing: bool = True
    is_active: bool = Field(default=True, description="Only active entries are exported.")
    export_libraries: bool = Field(default=False, description="Also export its notebooks and library files.")


class ExportPipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline_name: str = Field(min_length=1, max_length=4096)
    pipeline_id: str = Field(pattern=PIPELINE_ID)
    is_existing: bool = True
    is_active: bool = True
    export_libraries: bool = False


class InitialVariables(BaseModel):
    """Variables for the export; others than ``v_start_path`` are kept as they are."""

    model_config = ConfigDict(extra="allow")

    v_start_path: str = Field(max_length=1024, description="Where exports are written: a workspace folder.")

    @field_validator("v_start_path")
    @classmethod
    def workspace_folder(cls, value: str) -> str:
        if not re.fullmatch(WORKSPACE_PATH, value) or any(part in (".", "..") for part in value.split("/")):
            raise ValueError("must be an absolute workspace folder, e.g. /Workspace/Shared/exports")
        return value.rstrip("/")


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflows: list[ExportWorkflow] = Field(default_factory=list, max_length=5000)
    pipelines: list[ExportPipeline] = Field(default_factory=list, max_length=5000)
    initial_variables: InitialVariables

    @model_validator(mode="after")
    def no_duplicates(self) -> ExportConfig:
        id_lists: tuple[tuple[str, list[int | str]], ...] = (
            ("workflows", [w.job_id for w in self.workflows]),
            ("pipelines", [p.pipeline_id for p in self.pipelines]),
        )
        for name, ids in id_lists:
            repeated = sorted({str(i) for i in ids if ids.count(i) > 1})
            if repeated:
                raise ValueError(f"{name} lists the same id more than once: {', '.join(repeated)}")
        return self

    @property
    def active(self) -> tuple[list[ExportWorkflow], list[ExportPipeline]]:
        return [w for w in self.workflows if w.is_active], [p for p in self.pipelines if p.is_active]
