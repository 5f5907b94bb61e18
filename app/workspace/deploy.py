"""Putting ``notebooks/`` and the demo job into a workspace, idempotently.

Run by the service on start (``DARA_DEPLOY_ON_START``) and by ``scripts/deploy_demo.py``
for a real workspace, where the job gets real cluster settings instead of the
serverless environment the embedded workspace runs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import compute, jobs, workspace

from app.settings import PROJECT_ROOT
from steps.jobs import upsert_job

NOTEBOOKS = PROJECT_ROOT / "notebooks"
DEMO_NOTEBOOK = "dara_demo"
#: Widgets every DARA notebook declares; the demo's own parameters get these defaults.
DEMO_PARAMETERS = {"name": "world", "count": "10", "fail": ""}


@dataclass(frozen=True)
class ClusterSpec:
    """A new job cluster for a real workspace (None means serverless)."""

    spark_version: str = "15.4.x-scala2.12"
    node_type_id: str = "i3.xlarge"
    num_workers: int = 1


def import_notebooks(w: WorkspaceClient, folder: str, source: Path = NOTEBOOKS) -> dict[str, str]:
    """Import every ``*.py`` notebook in ``source`` into ``folder``; name -> workspace path."""
    w.workspace.mkdirs(folder)
    imported = {}
    for notebook in sorted(source.glob("*.py")):
        path = f"{folder.rstrip('/')}/{notebook.name}"
        w.workspace.import_(
            path=path,
            content=base64.b64encode(notebook.read_bytes()).decode(),
            format=workspace.ImportFormat.SOURCE,
            language=workspace.Language.PYTHON,
            overwrite=True,
        )
        imported[notebook.stem] = path
    return imported


def demo_job_settings(name: str, notebook_path: str, cluster: ClusterSpec | None) -> jobs.JobSettings:
    task = jobs.Task(
        task_key="main",
        notebook_task=jobs.NotebookTask(notebook_path=notebook_path, base_parameters=dict(DEMO_PARAMETERS)),
        timeout_seconds=3600,
    )
    settings = jobs.JobSettings(name=name, max_concurrent_runs=10, tasks=[task])
    if cluster is None:
        task.environment_key = "default"
        task.disable_auto_optimization = True
        settings.environments = [
            jobs.JobEnvironment(environment_key="default", spec=compute.Environment(environment_version="1"))
        ]
    else:
        task.job_cluster_key = "dara"
        settings.job_clusters = [
            jobs.JobCluster(
                job_cluster_key="dara",
                new_cluster=compute.ClusterSpec(
                    spark_version=cluster.spark_version,
                    node_type_id=cluster.node_type_id,
                    num_workers=cluster.num_workers,
                ),
            )
        ]
    return settings


def deploy_demo(w: WorkspaceClient, folder: str, job_name: str, cluster: ClusterSpec | None = None) -> int:
    """Import the notebooks and create or update the demo job; returns its id."""
    paths = import_notebooks(w, folder)
    # adopt: the name is DARA_DEMO_JOB_NAME, the operator's own setting, and a demo job
    # made before DARA tagged its jobs must not stop the service from starting.
    return upsert_job(w, demo_job_settings(job_name, paths[DEMO_NOTEBOOK], cluster), adopt=True)
