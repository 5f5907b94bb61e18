"""DARA's page of a Databricks run, where the embedded workspace's run links lead: its
state and each task's state, output and error, read with jobs.get_run and
get_run_output -- and the links that lead there, which survive a restart's new port."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from databricks.sdk.service.workspace import ImportFormat

from tests.harness import Service
from tests.workspace_items import make_job


def finished(service: Service, run_id: int) -> None:
    service.runtime.workspace.jobs.wait_get_run_job_terminated_or_skipped(run_id)


def test_a_run_that_succeeded_shows_its_output(service: Service) -> None:
    service.http.post("/runs", json={"pipeline": "notebook_job", "id": "dbr-ok", "params": {"job": "dara-demo"}})
    run = service.wait_for("dbr-ok")
    databricks = run["databricks_runs"][0]
    finished(service, databricks["run_id"])
    run_page = service.http.get("/ui/runs/dbr-ok").text
    page = service.http.get(f"/ui/databricks/runs/{databricks['run_id']}")
    by_url = service.http.get(databricks["url"].removeprefix(service.url))

    assert databricks["url"] == f"{service.url}/ui/databricks/jobs/{databricks['job_id']}/runs/{databricks['run_id']}"
    assert f'href="/ui/databricks/runs/{databricks["run_id"]}"' in run_page
    assert page.status_code == 200 and by_url.text == page.text
    assert re.search(r'<h1>Databricks run \d+ <span class="s success">SUCCESS</span>', page.text)
    assert "hello world" in page.text  # the notebook's exit value, its output


def test_a_run_that_failed_shows_the_notebooks_error(service: Service) -> None:
    """A job of its own whose notebook raises: no DARA run, so nothing cancels it first."""
    w = service.runtime.workspace
    path = "/Workspace/Shared/dara-tests/raises.py"
    w.workspace.mkdirs("/Workspace/Shared/dara-tests")
    source = base64.b64encode((Path(__file__).parent / "notebooks" / "raises.py").read_bytes()).decode()
    w.workspace.import_(path, content=source, format=ImportFormat.RAW, overwrite=True)
    job_id = make_job(w, "raises", notebook=path)
    run_id = w.jobs.run_now(job_id).response.run_id
    finished(service, run_id)
    page = service.http.get(f"/ui/databricks/runs/{run_id}").text

    assert re.search(r'<h1>Databricks run \d+ <span class="s failed">FAILED</span>', page), re.findall(
        r"<h1>.*?</h1>", page
    )
    assert "bad input 42" in page  # the notebook's exception, from get_run_output


def test_unknown_runs_are_404(service: Service) -> None:
    unknown = service.http.get("/ui/databricks/runs/987654321")
    zero = service.http.get("/ui/databricks/runs/0")

    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["detail"] == "the workspace has no run 987654321"
    assert zero.status_code == 422, zero.text
    [problem] = zero.json()["detail"]
    assert (problem["loc"], problem["msg"]) == (["path", "run_id"], "Input should be greater than or equal to 1")
