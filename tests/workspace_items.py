"""Jobs and Lakeflow pipelines for the console's tests, made in the embedded workspace
through databricks-sdk as a user would make them."""

from __future__ import annotations

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs, pipelines
from databricks.sdk.service.compute import Environment

#: The demo notebook the service imports at start (DARA_DEPLOY_ON_START).
NOTEBOOK = "/Workspace/Shared/dara/dara_demo.py"


def make_job(
    w: WorkspaceClient,
    name: str,
    *,
    scheduled: bool = False,
    tags: dict[str, str] | None = None,
    notebook: str = NOTEBOOK,
) -> int:
    created = w.jobs.create(
        name=name,
        tags=tags or {},
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 6 * * ?", timezone_id="UTC") if scheduled else None,
        environments=[jobs.JobEnvironment(environment_key="default", spec=Environment(environment_version="1"))],
        tasks=[
            jobs.Task(
                task_key="main",
                environment_key="default",
                disable_auto_optimization=True,  # brickhouse wants it on serverless tasks
                notebook_task=jobs.NotebookTask(notebook_path=notebook, base_parameters={"name": name}),
            )
        ],
    )
    assert created.job_id is not None
    return created.job_id


def make_pipeline(w: WorkspaceClient, name: str) -> str:
    created = w.pipelines.create(
        name=name,
        catalog="main",
        schema="sales",
        libraries=[pipelines.PipelineLibrary(notebook=pipelines.NotebookLibrary(path=NOTEBOOK))],
    )
    assert created.pipeline_id is not None
    return created.pipeline_id
