"""Whether a body the Databricks HTTP double serves is one the real API could send.

The double (scripts/databricks_double.py) is worth its tests only while its bodies match
the API, and databricks-sdk's types are the API's schema as this project sees it. A
body is parsed with its route's response type (``from_dict``) and written back
(``as_dict``): whatever the type does not know -- a field it lacks, an enum value it
has no member for -- is missing from the round trip, and is reported with its path.
The SDK itself drops such things silently, which is how the double drifted unnoticed.

Keys alone are compared, not values: ``from_dict`` keeps scalars as they are. What
the types cannot say -- a run's ``status`` agreeing with its ``state``, an ended run
having an end time -- is checked by :func:`run_problems`.

The double runs :func:`problems` on every 2xx JSON body it serves, and the tests'
``databricks_double`` fixture (tests/conftest.py) fails on any; tests/test_databricks_double_shapes.py
checks the ``recorded_*`` builders over their whole range.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from databricks.sdk.service import compute, database, jobs, pipelines, sql, vectorsearch

#: The response type of each route the double serves, as databricks-sdk calls them.
#: ``{name}`` is one path segment. Routes not listed (the SDK's host-metadata probe,
#: the Files API's empty answers) are not checked.
RESPONSE_TYPES: dict[tuple[str, str], type] = {
    ("GET", "/api/2.2/jobs/get"): jobs.Job,
    ("GET", "/api/2.2/jobs/list"): jobs.ListJobsResponse,
    ("POST", "/api/2.2/jobs/run-now"): jobs.RunNowResponse,
    ("POST", "/api/2.2/jobs/runs/submit"): jobs.SubmitRunResponse,
    ("GET", "/api/2.2/jobs/runs/get"): jobs.Run,
    ("GET", "/api/2.2/jobs/runs/get-output"): jobs.RunOutput,
    ("GET", "/api/2.2/jobs/runs/list"): jobs.ListRunsResponse,
    ("POST", "/api/2.1/jobs/runs/repair"): jobs.RepairRunResponse,
    ("POST", "/api/2.2/jobs/runs/repair"): jobs.RepairRunResponse,
    ("POST", "/api/2.0/sql/statements"): sql.StatementResponse,
    ("GET", "/api/2.0/sql/statements/{statement_id}"): sql.StatementResponse,
    ("GET", "/api/2.0/sql/statements/{statement_id}/result/chunks/{chunk_index}"): sql.ResultData,
    ("POST", "/api/2.0/pipelines/{pipeline_id}/updates"): pipelines.StartUpdateResponse,
    ("GET", "/api/2.0/pipelines/{pipeline_id}/updates/{update_id}"): pipelines.GetUpdateResponse,
    ("GET", "/api/2.0/pipelines/{pipeline_id}/events"): pipelines.ListPipelineEventsResponse,
    ("POST", "/api/2.0/vector-search/indexes/{index_name}/sync"): vectorsearch.SyncIndexResponse,
    ("POST", "/api/2.0/database/credentials"): database.DatabaseCredential,
    ("GET", "/api/2.1/clusters/get"): compute.ClusterDetails,
    ("GET", "/api/2.0/sql/warehouses/{id}"): sql.GetWarehouseResponse,
}

_ROUTES = [
    (method, re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern)) + r"\Z"), cls)
    for (method, pattern), cls in RESPONSE_TYPES.items()
]


def response_type(method: str, path: str) -> type | None:
    """databricks-sdk's type for what ``method path`` answers; None if not known here."""
    return next((cls for m, regex, cls in _ROUTES if m == method and regex.match(path)), None)


def problems(method: str, path: str, body: Any) -> list[str]:
    """What in ``body``, served to ``method path``, the real API would not send."""
    cls = response_type(method, path)
    if cls is None:
        return []
    if not isinstance(body, dict):
        return [f"{method} {path}: the body is {type(body).__name__}, not a {cls.__name__} object"]
    found = [f"{method} {path}: {problem}" for problem in unknown_fields(cls, body)]
    return found + [f"{method} {path}: {problem}" for problem in run_problems(cls, body)]


def unknown_fields(cls: type, body: dict[str, Any]) -> list[str]:
    """Each path in ``body`` that does not survive ``cls.from_dict(body).as_dict()``."""
    parsed = cls.from_dict(body)  # type: ignore[attr-defined]
    return _compare(body, parsed.as_dict(), parsed, cls.__name__)


def _compare(body: Any, kept: Any, parsed: Any, path: str) -> list[str]:
    if isinstance(body, dict) and isinstance(kept, dict):
        found: list[str] = []
        fields = {f.name for f in dataclasses.fields(parsed)} if dataclasses.is_dataclass(parsed) else None
        for key, value in body.items():
            where = f"{path}.{key}"
            child = getattr(parsed, key, None) if fields is not None else (parsed or {}).get(key)
            if key in kept:
                found += _compare(value, kept[key], child, where)
            elif fields is not None and key in fields and value in (None, [], {}):
                pass  # as_dict leaves out empty lists and nulls of fields it has
            elif fields is not None and key in fields:
                found.append(f"{where}: {value!r} is not a value databricks-sdk reads")
            else:
                found.append(f"{where}: not a field of {type(parsed).__name__ if fields is not None else path}")
        return found
    if isinstance(body, list) and isinstance(kept, list) and len(body) == len(kept):
        items = parsed if isinstance(parsed, list) and len(parsed) == len(body) else [None] * len(body)
        return [
            p
            for i, (b, k, o) in enumerate(zip(body, kept, items, strict=True))
            for p in _compare(b, k, o, f"{path}[{i}]")
        ]
    return []


#: ``status.state`` (the lifecycle the API reports since Jobs 2.2) for each ``state.life_cycle_state``.
STATUS_OF_LIFE_CYCLE = {
    "QUEUED": "QUEUED",
    "PENDING": "PENDING",
    "RUNNING": "RUNNING",
    "WAITING_FOR_RETRY": "WAITING",
    "BLOCKED": "BLOCKED",
    "TERMINATING": "TERMINATING",
    "TERMINATED": "TERMINATED",
    "SKIPPED": "TERMINATED",
    "INTERNAL_ERROR": "TERMINATED",
}
ENDED = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


def run_problems(cls: type, body: dict[str, Any]) -> list[str]:
    """A run (or each run and task of a list) whose ``status`` disagrees with its
    ``state``, or that ended without an end time and a duration."""
    if cls is jobs.ListRunsResponse:
        return [p for i, run in enumerate(body.get("runs") or []) for p in _run_problems(run, f"runs[{i}]")]
    if cls is jobs.Run:
        return _run_problems(body, "run")
    return []


def _run_problems(run: dict[str, Any], where: str) -> list[str]:
    found: list[str] = []
    for name, part in [(where, run)] + [(f"{where}.tasks[{i}]", t) for i, t in enumerate(run.get("tasks") or [])]:
        life_cycle = (part.get("state") or {}).get("life_cycle_state")
        status = (part.get("status") or {}).get("state")
        if life_cycle is not None and status is not None and STATUS_OF_LIFE_CYCLE.get(life_cycle) != status:
            found.append(f"{name}: status.state {status} but state.life_cycle_state {life_cycle}")
        if life_cycle in ENDED:
            if not part.get("end_time") or part["end_time"] < part.get("start_time", 0):
                found.append(f"{name}: ended ({life_cycle}) but end_time is {part.get('end_time')!r}")
            if part is run and not part.get("run_duration"):
                found.append(f"{name}: ended ({life_cycle}) but run_duration is {part.get('run_duration')!r}")
            if status == "TERMINATED" and "termination_details" not in part["status"]:
                found.append(f"{name}: status TERMINATED without termination_details")
    return found
