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
Paged job and run listings, job schedules and Lakeflow pipeline definitions are
app.workspace.embedded_listings; workspace files other than Python and JSON,
app.workspace.embedded_files.
It also lacks ``jobs/runs/cancel`` (app.workspace.embedded_cancel), and its
``runs/get-output`` hides a failed notebook's exception and the output of each task of
a multi-task run (app.workspace.embedded_run_output) and serves a notebook's exit value
only inside its logs (app.workspace.embedded_exit_value). Its secrets reach notebooks
but no route fills them: the Secrets API is app.workspace.embedded_secrets.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from brickhouse.api.catalog import ApiResponse
from brickhouse.diagnostic_server import create_diagnostic_server
from brickhouse.workspace.context import WorkspaceContext
from brickhouse.workspace.lifecycle import initialize_workspace

from app.workspace.embedded_cancel import serve_cancel
from app.workspace.embedded_exit_value import serve_exit_values
from app.workspace.embedded_files import serve_any_files
from app.workspace.embedded_listings import serve_listings
from app.workspace.embedded_run_output import serve_run_output, use_exception_reporting_worker
from app.workspace.embedded_secrets import serve_secrets

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

    def start(self) -> Self:
        if not (self.directory / "brickhouse.toml").exists():
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            initialize_workspace(self.directory)
        use_exception_reporting_worker()  # before brickhouse may start a queued run
        self._context = WorkspaceContext.local(self.directory).__enter__()
        try:
            self._server = create_diagnostic_server(self._context, "127.0.0.1", 0)
        except BaseException:
            self._context.close()
            raise
        jobs_api = self._server._jobs_api
        # Innermost first: the listings _complete_jobs_api adds read runs/get through them.
        serve_run_output(jobs_api)
        serve_exit_values(jobs_api)
        serve_cancel(jobs_api)
        serve_secrets(jobs_api, self._context.secret_provider)
        _complete_jobs_api(jobs_api)
        serve_listings(jobs_api, self.directory)  # outermost: it pages _complete_jobs_api's listings
        serve_any_files(self._server, self.directory)  # YAML and other files brickhouse does not keep
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Life cycle states of a run that has not ended (``runs/list?active_only=true``).
_ACTIVE = {"QUEUED", "PENDING", "BLOCKED", "RUNNING", "TERMINATING", "WAITING_FOR_RETRY"}


def _with_parameters(listed: dict[str, Any] | None, record: Any) -> dict[str, Any] | None:
    """A listed run with the ``notebook_params`` run-now was given, as Databricks lists it
    (``overriding_parameters``): the sweep of orphaned runs (app.orphaned_runs) reads
    the callback's promise id there."""
    params = record.submitted_settings.get("notebook_params")
    if listed is not None and isinstance(params, dict) and params:
        listed["overriding_parameters"] = {"notebook_params": params}
    return listed


def _complete_jobs_api(jobs_api: Any) -> None:
    """Add ``GET jobs/list?name=`` and ``jobs/runs/list`` (``?job_id=``, ``?active_only=``);
    complete ``jobs/get``."""
    dispatch = jobs_api.dispatch
    registry, repository = jobs_api._terraform_jobs, jobs_api._repository

    def get(target: str) -> dict[str, Any] | None:
        response = dispatch("GET", target)
        return response.payload if response is not None and response.status == 200 else None

    def list_jobs(query: dict[str, list[str]]) -> ApiResponse:
        wanted = query.get("name", [None])[0]
        api_ids = sorted({registry.resolve_resource_id(job.job_id) or job.job_id for job in repository.list_jobs()})
        found = []
        for job_id in api_ids:
            job = get(f"/api/2.2/jobs/get?job_id={job_id}")
            if job is not None and (wanted is None or job["settings"].get("name") == wanted):
                found.append(job)
        return ApiResponse(200, {"jobs": found, "has_more": False})

    def list_runs(query: dict[str, list[str]]) -> ApiResponse:
        # The SDK sends booleans as "True"/"true"; the run watchers list only active runs
        # (app.active_runs), of every job, and a run that ended must not be read for it.
        active_only = query.get("active_only", ["false"])[0].lower() == "true"
        if "job_id" in query:
            job_id = int(query["job_id"][0])
            definitions = registry.definition_job_ids(job_id) or (job_id,)
            records = [run for definition in definitions for run in repository.list_runs(definition)]
        elif active_only:
            records = repository.list_active_runs() + repository.list_queued_runs()
        else:
            records = [run for job in repository.list_jobs() for run in repository.list_runs(job.job_id)]
        if active_only:
            records = [run for run in records if not run.state.is_terminal]
        # runs/get also notices a run whose notebook process died, and ends it.
        runs = [_with_parameters(get(f"/api/2.2/jobs/runs/get?run_id={run.run_id}"), run) for run in records]
        runs = [r for r in runs if r and (not active_only or r["state"].get("life_cycle_state") in _ACTIVE)]
        return ApiResponse(200, {"runs": runs, "has_more": False})

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

    def dispatch_with_listing(method: str, target: str, body: dict[str, object] | None = None) -> ApiResponse | None:
        parsed = urlsplit(target)
        route = routes.get(parsed.path)
        if method == "GET" and route is not None:
            return route(parse_qs(parsed.query))
        return dispatch(method, target, body)

    jobs_api.dispatch = dispatch_with_listing
