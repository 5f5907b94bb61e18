"""DARA_LOG_FORMAT=json: the real service (``python -m app``) logs one JSON object a
line, and the lines of a request and of a run say which request and which run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.settings import PROJECT_ROOT
from tests.harness import SECRET


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_json_lines_carry_the_request_id_and_the_run_id(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARA_", "DATABRICKS_", "OTEL_", "RESONATE_"))}
    env |= {
        "DARA_LOG_FORMAT": "json",
        "DARA_PORT": str(port),
        "DARA_STATE_DIR": str(tmp_path / "state"),
        "DARA_CALLBACK_SECRET": SECRET,
    }
    log = (tmp_path / "service.log").open("w+")
    service = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_until_healthy(http, service)
            body = {"pipeline": "notebook_job", "id": "json-logs", "params": {"job": "dara-demo"}}
            started = http.post("/runs", json=body, headers={"X-Request-Id": "req-json-1"})
            assert started.status_code == 201, started.text
            assert started.headers["x-request-id"] == "req-json-1"
            run = http.get("/runs/json-logs", params={"wait": 30}).json()
            assert run["status"] == "done", run
    finally:
        service.terminate()
        service.wait(timeout=20)
    log.seek(0)
    lines = log.read().splitlines()

    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert not [r for r in records if "color_message" in r]
    started_line = one(records, logger="app.audit", request_id="req-json-1")
    assert started_line["run_id"] == "json-logs"
    assert "started run 'json-logs'" in started_line["message"]
    # Logged by the pipeline's last execution, after the callback resumed it:
    ended = one(records, logger="app.runs", run_id="json-logs")
    assert ended["message"].startswith("run json-logs (notebook_job) ended done after ")
    # uvicorn's access log goes through the same formatter, inside the request's context:
    callback = [r for r in records if r["logger"] == "uvicorn.access" and "resolve" in r["message"]]
    assert callback, "the notebook's callback should be in the access log"
    assert callback[0]["run_id"] == "json-logs"
    assert len(callback[0]["request_id"]) == 32  # the notebook sends none: one was made up
    assert [r for r in records if r["logger"] == "uvicorn.access" and r.get("request_id") == "req-json-1"]


def one(records: list[dict], **fields: str) -> dict:
    found = [r for r in records if all(r.get(k) == v for k, v in fields.items())]
    assert len(found) == 1, (fields, found)
    return found[0]


def wait_until_healthy(http: httpx.Client, service: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise AssertionError(f"the service exited with {service.returncode}")
        try:
            if http.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the service did not become healthy")
