"""Listings the console needs from the embedded workspace, which brickhouse 0.1.0
answers only in part, and Lakeflow pipelines, which it does not keep at all.

- ``GET jobs/list`` pages as the real API does (``limit``, ``offset``, ``page_token``,
  ``next_page_token``, ``expand_tasks``): databricks-sdk's ``jobs.list`` then really
  pages through it, as it would through a real workspace's.
- ``GET jobs/runs/list`` lists a job's runs newest first, a page at a time, as the real
  API does (the SDK's ``list_runs(limit=)`` then yields the latest first).
- A job's ``schedule``, ``trigger`` and ``continuous``, which brickhouse refuses: kept
  aside (one JSON file) on ``jobs/create`` and ``jobs/reset`` and given back by
  ``jobs/get`` and ``jobs/list``, so scheduled jobs can be browsed and exported. They
  trigger nothing: the embedded workspace runs jobs only when asked.
- ``/api/2.0/pipelines`` (create, list with ``max_results``/``page_token`` and a
  ``name LIKE '...'`` filter, get, edit, delete): pipeline *definitions*, kept in one
  JSON file beside brickhouse's own records, so the workspace browser and exports can
  read them. Updates are not run: the embedded workspace cannot run a Lakeflow pipeline.

Each wraps ``jobs_api.dispatch`` as app.workspace.embedded's other completions do;
:func:`serve_listings` goes on last (outermost), over their ``jobs/list``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from brickhouse.api.catalog import ApiResponse

#: Who "created" what the embedded workspace holds: its one local user (scim/Me).
LOCAL_USER = "brickhouse-local@invalid"
PIPELINES_PATH = "/api/2.0/pipelines"
_LIKE = re.compile(r"^\s*name\s+LIKE\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)
_PIPELINE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def serve_listings(jobs_api: Any, directory: Path) -> None:
    """Page ``jobs/list`` and ``jobs/runs/list``, and serve ``/api/2.0/pipelines``."""
    dispatch = jobs_api.dispatch
    pipelines = PipelineStore(directory / "dara-pipelines.json")
    triggers = TriggerStore(directory / "dara-job-triggers.json")

    def create_job(body: dict[str, object] | None) -> ApiResponse | None:
        kept, rest = triggers.split(body or {})
        response = dispatch("POST", "/api/2.2/jobs/create", rest)
        if response is not None and response.status == 200:
            triggers.put(response.payload["job_id"], kept)
        return response

    def reset_job(body: dict[str, object] | None) -> ApiResponse | None:
        settings = (body or {}).get("new_settings")
        kept, rest = triggers.split(settings if isinstance(settings, dict) else {})
        response = dispatch("POST", "/api/2.2/jobs/reset", {**(body or {}), "new_settings": rest})
        job_id = (body or {}).get("job_id")
        if response is not None and response.status == 200 and isinstance(job_id, int):
            triggers.put(job_id, kept)
        return response

    def get_job(target: str) -> ApiResponse | None:
        response = dispatch("GET", target)
        if response is not None and response.status == 200:
            triggers.merge(response.payload)
        return response

    def paged_jobs(query: dict[str, list[str]]) -> ApiResponse:
        inner = dispatch("GET", "/api/2.2/jobs/list" + (f"?name={query['name'][0]}" if "name" in query else ""))
        if inner is None or inner.status != 200:
            return inner or _error(404, "RESOURCE_DOES_NOT_EXIST", "Jobs API route not found")
        jobs = sorted(inner.payload.get("jobs", []), key=lambda job: job["job_id"])
        for job in jobs:
            triggers.merge(job)
        limit = _int(query, "limit", 20, 1, 100)
        page, start = _page(jobs, query, limit)
        if not _flag(query, "expand_tasks"):
            page = [{**job, "settings": {k: v for k, v in job["settings"].items() if k != "tasks"}} for job in page]
        return ApiResponse(
            200, _with_next({"jobs": page, "has_more": start + limit < len(jobs)}, start + limit, len(jobs))
        )

    def paged_runs(query: dict[str, list[str]]) -> ApiResponse:
        inner = dispatch("GET", "/api/2.2/jobs/runs/list?job_id=" + query.get("job_id", [""])[0])
        if inner is None or inner.status != 200:
            return inner or _error(404, "RESOURCE_DOES_NOT_EXIST", "Jobs API route not found")
        runs = sorted(
            inner.payload.get("runs", []), key=lambda run: (run.get("start_time") or 0, run["run_id"]), reverse=True
        )
        limit = _int(query, "limit", 25, 1, 25)
        page, start = _page(runs, query, limit)
        return ApiResponse(
            200, _with_next({"runs": page, "has_more": start + limit < len(runs)}, start + limit, len(runs))
        )

    def dispatch_listings(method: str, target: str, body: dict[str, object] | None = None) -> ApiResponse | None:
        parsed = urlsplit(target)
        query = parse_qs(parsed.query)
        try:
            if method == "GET" and parsed.path == "/api/2.2/jobs/list":
                return paged_jobs(query)
            if method == "GET" and parsed.path == "/api/2.2/jobs/get":
                return get_job(target)
            if method == "POST" and parsed.path == "/api/2.2/jobs/create":
                return create_job(body)
            if method == "POST" and parsed.path == "/api/2.2/jobs/reset":
                return reset_job(body)
            if method == "GET" and parsed.path == "/api/2.2/jobs/runs/list" and "job_id" in query:
                return paged_runs(query)
            if parsed.path == PIPELINES_PATH or parsed.path.startswith(PIPELINES_PATH + "/"):
                return pipelines.dispatch(method, parsed.path[len(PIPELINES_PATH) :].strip("/"), query, body)
        except _BadRequest as exc:
            return _error(400, "INVALID_PARAMETER_VALUE", str(exc))
        return dispatch(method, target, body)

    jobs_api.dispatch = dispatch_listings


class TriggerStore:
    """What starts a job on a real workspace (schedule, trigger, continuous), by job id."""

    FIELDS = ("schedule", "trigger", "continuous")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def split(self, settings: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
        """(the fields brickhouse refuses, the rest)."""
        kept = {k: v for k, v in settings.items() if k in self.FIELDS}
        return kept, {k: v for k, v in settings.items() if k not in self.FIELDS}

    def put(self, job_id: int, kept: dict[str, object]) -> None:
        with self._lock:
            records = _read_json(self.path)
            if kept:
                records[str(job_id)] = kept
            else:
                records.pop(str(job_id), None)
            _write_json(self.path, records)

    def merge(self, job: dict[str, Any]) -> None:
        """Give back what the job was created with, and its creator (brickhouse has one user)."""
        job.setdefault("creator_user_name", LOCAL_USER)
        with self._lock:
            kept = _read_json(self.path).get(str(job.get("job_id")))
        if kept:
            job.setdefault("settings", {}).update(kept)


class PipelineStore:
    """Lakeflow pipeline definitions in one JSON file, for the embedded workspace."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def dispatch(
        self, method: str, rest: str, query: dict[str, list[str]], body: dict[str, object] | None
    ) -> ApiResponse:
        if rest == "":
            if method == "GET":
                return self._list(query)
            if method == "POST":
                return self._create(body or {})
            return _error(405, "INVALID_PARAMETER_VALUE", "use GET or POST on /api/2.0/pipelines")
        if "/" in rest or not _PIPELINE_ID.match(rest):
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"no pipeline route {rest!r} in the embedded workspace")
        with self._lock:
            records = self._read()
            record = records.get(rest)
            if record is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"The specified pipeline {rest} was not found.")
            if method == "GET":
                return ApiResponse(200, _details(record))
            if method == "PUT":
                spec = _spec(body or {})
                records[rest] = {
                    **record,
                    "spec": {**spec, "id": rest},
                    "name": spec["name"],
                    "last_modified": _now_ms(),
                }
                self._write(records)
                return ApiResponse(200, {})
            if method == "DELETE":
                del records[rest]
                self._write(records)
                return ApiResponse(200, {})
        return _error(405, "INVALID_PARAMETER_VALUE", "use GET, PUT or DELETE on a pipeline")

    def _create(self, body: dict[str, object]) -> ApiResponse:
        spec = _spec(body)
        pipeline_id = str(uuid.uuid4())
        with self._lock:
            records = self._read()
            if any(r["name"] == spec["name"] for r in records.values()) and not body.get("allow_duplicate_names"):
                return _error(409, "RESOURCE_CONFLICT", f"A pipeline with name '{spec['name']}' already exists.")
            records[pipeline_id] = {
                "pipeline_id": pipeline_id,
                "name": spec["name"],
                "spec": {**spec, "id": pipeline_id},
                "creator_user_name": LOCAL_USER,
                "state": "IDLE",
                "created": _now_ms(),
                "last_modified": _now_ms(),
            }
            self._write(records)
        return ApiResponse(200, {"pipeline_id": pipeline_id, "effective_settings": {**spec, "id": pipeline_id}})

    def _list(self, query: dict[str, list[str]]) -> ApiResponse:
        wanted = _name_filter(query.get("filter", [None])[0])
        with self._lock:
            records = sorted(self._read().values(), key=lambda r: (r["name"].lower(), r["pipeline_id"]))
        matching = [r for r in records if wanted is None or wanted.fullmatch(r["name"])]
        limit = _int(query, "max_results", 25, 1, 100)
        page, start = _page(matching, query, limit)
        payload: dict[str, Any] = {"statuses": [_status(r) for r in page]}
        return ApiResponse(200, _with_next(payload, start + limit, len(matching)))

    def _read(self) -> dict[str, dict[str, Any]]:
        return _read_json(self.path)

    def _write(self, records: dict[str, dict[str, Any]]) -> None:
        _write_json(self.path, records)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _write_json(path: Path, records: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(records, indent=1))
    temporary.replace(path)  # whole, or not at all


def _spec(body: dict[str, object]) -> dict[str, Any]:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _BadRequest("a pipeline needs a name")
    keep = {
        k: v
        for k, v in body.items()
        if k not in ("id", "allow_duplicate_names", "dry_run", "pipeline_id", "expected_last_modified")
    }
    return {**keep, "name": name.strip()}


def _status(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "pipeline_id": record["pipeline_id"],
        "name": record["name"],
        "state": record["state"],
        "creator_user_name": record["creator_user_name"],
        "run_as_user_name": record["creator_user_name"],
        "latest_updates": [],
    }


def _details(record: dict[str, Any]) -> dict[str, Any]:
    return {**_status(record), "spec": record["spec"], "last_modified": record["last_modified"], "health": "HEALTHY"}


def _name_filter(text: str | None) -> re.Pattern[str] | None:
    """The real API's ``name LIKE '%x%'``, as a regex (``%`` any run, ``_`` one character)."""
    if text is None or not text.strip():
        return None
    match = _LIKE.match(text)
    if match is None:
        raise _BadRequest(f"unsupported filter {text!r}: the embedded workspace takes name LIKE '...'")
    pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in match[1].replace("''", "'"))
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


def _page(items: list[Any], query: dict[str, list[str]], limit: int) -> tuple[list[Any], int]:
    """One page of ``items`` from ``page_token`` (this layer's own: an offset) or ``offset``."""
    token = query.get("page_token", [""])[0]
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise _BadRequest(f"page_token {token!r} was not issued by this workspace") from None
    else:
        start = _int(query, "offset", 0, 0, 10**9)
    return items[start : start + limit], start


def _with_next(payload: dict[str, Any], end: int, total: int) -> dict[str, Any]:
    if end < total:
        payload["next_page_token"] = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode()
    return payload


def _int(query: dict[str, list[str]], key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key, [None])[0]
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{key} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise _BadRequest(f"{key} must be between {low} and {high}")
    return value


def _flag(query: dict[str, list[str]], key: str) -> bool:
    return query.get(key, ["false"])[0].lower() == "true"


def _error(status: int, code: str, message: str) -> ApiResponse:
    return ApiResponse(status, {"error_code": code, "message": message})


def _now_ms() -> int:
    return int(time.time() * 1000)


class _BadRequest(ValueError):
    pass
