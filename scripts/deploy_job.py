#!/usr/bin/env python
"""Deploy a folder of notebooks as a Databricks job, from its compute config and task list.

    python scripts/deploy_job.py examples/task_graph --dry-run
    python scripts/deploy_job.py examples/task_graph --run

Reads FOLDER/compute.yaml|yml|json and FOLDER/tasks.yaml|yml|json (or --compute /
--tasks), validates everything before any API call, uploads the task files, and
creates the job or updates it in place (nothing changes when it is already current).
With DATABRICKS_HOST or a profile set, databricks-sdk's unified auth picks the
workspace; otherwise the embedded local workspace under DARA_STATE_DIR/workspace
(default .dara/workspace) is used -- stop the DARA service first, which runs the same
one. The input formats are documented in examples/task_graph/README.md.

Exit status: 0 done, 1 the run failed, 2 the task graph is invalid or cannot be deployed
(a task file outside the folder, or a job of that name that DARA did not create).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, not only as an installed package
    sys.path.insert(0, str(ROOT))

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from app.settings import Settings
from app.taskgraph import (
    TaskGraph,
    TaskGraphError,
    job_settings,
    render_text,
    validate,
    workspace_paths,
)
from app.workspace.client import workspace_client
from app.workspace.embedded import EmbeddedWorkspace
from steps.jobs import JobNotManaged, run_url, upsert_job
from steps.task_graph_root import (
    TaskGraphPathError,
    TaskGraphRoot,
    WorkspacePathError,
    WorkspaceRoot,
)
from steps.workspace_files import upload_task_files


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    folder = Path(args.folder)
    name = args.name or folder.resolve().name
    workspace_dir = args.workspace_dir or f"{settings.notebook_dir.rstrip('/')}/{name}"
    try:
        graph = validate(TaskGraph.from_folder(folder, compute=args.compute, tasks=args.tasks))
        paths = workspace_paths(graph, workspace_dir)
    except (TaskGraphError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(render_text(graph), file=sys.stderr, end="")
    if args.dry_run:
        print(json.dumps(job_settings(graph, name, paths).as_dict(), indent=2))
        return 0

    embedded = None
    if settings.uses_embedded_workspace:
        embedded = EmbeddedWorkspace(settings.state_dir / "workspace").start()
        print(f"using the embedded local workspace at {embedded.directory}", file=sys.stderr)
    try:
        w = workspace_client(settings, embedded)
        try:
            job_id = deploy(w, graph, name, paths, workspace_dir)
        except (JobNotManaged, TaskGraphPathError, WorkspacePathError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"job {name!r}: {w.config.host.rstrip('/')}/jobs/{job_id}", file=sys.stderr)
        if not args.run:
            print(json.dumps({"job_id": job_id}))
            return 0
        return run(w, job_id, timedelta(minutes=args.timeout))
    finally:
        if embedded is not None:
            embedded.stop()


def deploy(w: WorkspaceClient, graph: TaskGraph, name: str, paths: dict[str, str], workspace_dir: str) -> int:
    """Upload the task files and upsert the job: the two steps a durable deploy runs.

    The folder given on the command line is the root its task files must stay in, and
    the workspace dir chosen the one they go under. The job is tagged as DARA's; a job
    of that name DARA did not create is left alone (an error).
    """
    assert graph.folder is not None
    uploaded = upload_task_files(w, TaskGraphRoot(graph.folder), WorkspaceRoot(workspace_dir), ".", paths)
    return upsert_job(w, job_settings(graph, name, uploaded))


def run(w: WorkspaceClient, job_id: int, timeout: timedelta) -> int:
    """Run the job to the end, printing each task's result."""
    started = w.jobs.run_now(job_id)
    print(f"run: {run_url(w, job_id, started.run_id)}", file=sys.stderr)
    finished = started.result(timeout=timeout)
    for task in finished.tasks or []:
        state = task.state.result_state.value if task.state and task.state.result_state else "?"
        print(f"  {task.task_key}: {state}", file=sys.stderr)
    result = finished.state.result_state if finished.state else None
    print(json.dumps({"job_id": job_id, "run_id": finished.run_id, "result": result and result.value}))
    return 0 if result == jobs.RunResultState.SUCCESS else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Deploy a folder of notebooks as a Databricks job from its task graph.",
        epilog="Formats: examples/task_graph/README.md",
    )
    parser.add_argument("folder", help="folder with the task files (and compute/tasks files)")
    parser.add_argument("--compute", help="compute config file (default: FOLDER/compute.yaml|yml|json)")
    parser.add_argument("--tasks", help="task list file (default: FOLDER/tasks.yaml|yml|json)")
    parser.add_argument("--name", help="job name (default: the folder's name)")
    parser.add_argument(
        "--workspace-dir",
        help="workspace folder for the task files (default: DARA_NOTEBOOK_DIR/NAME, e.g. /Workspace/Shared/dara/NAME)",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and print the job settings; no API call")
    parser.add_argument("--run", action="store_true", help="run the job after deploying, and wait")
    parser.add_argument("--timeout", type=float, default=60, help="minutes to wait for --run (default 60)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
