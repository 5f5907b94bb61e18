"""An embedded local Databricks workspace (brickhouse), for running without an account.

brickhouse serves the Databricks REST API on a loopback port and runs source-format
notebooks in worker processes. DARA starts it in-process on a free port, keeps its
files under ``DARA_STATE_DIR/workspace`` (so jobs, runs and their idempotency tokens
survive a restart of the service) and stops it -- reaping its notebook processes --
when the service stops.

brickhouse 0.1.0 lacks two read-only routes DARA uses against real workspaces:
``jobs/list`` (find a job by name, for idempotent deploys) and ``jobs/runs/list``, and
its ``jobs/get`` leaves a job's serverless ``environments`` out (so every deploy would
look like a change). :func:`_complete_jobs_api` answers them from brickhouse's own
records, so DARA's code calls the same Databricks API whichever workspace it talks to.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from brickhouse.api.catalog import ApiResponse
from brickhouse.diagnostic_server import create_diagnostic_server
from brickhouse.workspace.context import WorkspaceContext
from brickhouse.workspace.lifecycle import initialize_workspace

logger = logging.getLogger(__name__)

LOCAL_TOKEN = "brickhouse-local"  # brickhouse does no caller auth; the SDK wants a token


class EmbeddedWorkspace:
    """brickhouse running in this process. Use as a context manager, or start/stop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.host = ""
        self._context: WorkspaceContext | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmbeddedWorkspace:
        if not (self.directory / "brickhouse.toml").exists():
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            initialize_workspace(self.directory)
        self._context = WorkspaceContext.local(self.directory).__enter__()
        try:
            self._server = create_diagnostic_server(self._context, "127.0.0.1", 0)
        except BaseException:
            self._context.close()
            raise
        _complete_jobs_api(self._server._jobs_api)
        self.host = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="embedded-workspace",
            daemon=True,
        )
        self._thread.start()
        logger.info("embedded Databricks workspace at %s (%s)", self.host, self.directory)
        return self

    def stop(self) -> None:
        """Stop serving and reap running notebooks (cancelled, as on a real shutdown)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._context is not None:
            self._context.close()
            self._context = None

    def __enter__(self) -> EmbeddedWorkspace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _complete_jobs_api(jobs_api: Any) -> None:
    """Add ``GET jobs/list?name=`` and ``jobs/runs/list?job_id=``; complete ``jobs/get``."""
    dispatch = jobs_api.dispatch
    registry, repository = jobs_api._terraform_jobs, jobs_api._repository

    def get(target: str) -> dict[str, Any] | None:
        response = dispatch("GET", target)
        return response.payload if response is not None and response.status == 200 else None

    def list_jobs(query: dict[str, list[str]]) -> ApiResponse:
        wanted = query.get("name", [None])[0]
        api_ids = sorted(
            {registry.resolve_resource_id(job.job_id) or job.job_id for job in repository.list_jobs()}
        )
        found = []
        for job_id in api_ids:
            job = get(f"/api/2.2/jobs/get?job_id={job_id}")
            if job is not None and (wanted is None or job["settings"].get("name") == wanted):
                found.append(job)
        return ApiResponse(200, {"jobs": found, "has_more": False})

    def list_runs(query: dict[str, list[str]]) -> ApiResponse:
        job_id = int(query["job_id"][0])
        definitions = registry.definition_job_ids(job_id) or (job_id,)
        runs = [
            get(f"/api/2.2/jobs/runs/get?run_id={run.run_id}")
            for definition in definitions
            for run in repository.list_runs(definition)
        ]
        return ApiResponse(200, {"runs": [r for r in runs if r], "has_more": False})

    def get_job(query: dict[str, list[str]]) -> ApiResponse | None:
        job = get(f"/api/2.2/jobs/get?job_id={query['job_id'][0]}")
        if job is None:
            return dispatch("GET", f"/api/2.2/jobs/get?job_id={query['job_id'][0]}")
        definition = registry.resolve_execution_id(job["job_id"]) or job["job_id"]
        environments: dict[str, dict[str, Any]] = {}
        for task in repository.get_job(definition).tasks:
            context = task.settings.get("execution_context") or {}
            if context.get("environment_source") == "job":
                spec: dict[str, Any] = {"environment_version": context["environment_version"]}
                if context.get("dependencies"):
                    spec["dependencies"] = list(context["dependencies"])
                environments[context["environment_key"]] = {
                    "environment_key": context["environment_key"],
                    "spec": spec,
                }
        if environments:
            job["settings"]["environments"] = [environments[key] for key in sorted(environments)]
        return ApiResponse(200, job)

    routes = {
        "/api/2.2/jobs/list": list_jobs,
        "/api/2.2/jobs/runs/list": list_runs,
        "/api/2.2/jobs/get": get_job,
    }

    def dispatch_with_listing(
        method: str, target: str, body: dict[str, object] | None = None
    ) -> ApiResponse | None:
        parsed = urlsplit(target)
        route = routes.get(parsed.path)
        if method == "GET" and route is not None:
            return route(parse_qs(parsed.query))
        return dispatch(method, target, body)

    jobs_api.dispatch = dispatch_with_listing
