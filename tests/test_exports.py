"""Export configs in the workspace and durable exports of what they select: the
config's checks, its round trip through the workspace's files, and an export run that
writes each job's and pipeline's definition (JSON and bundle YAML) and, when asked,
its notebooks, with progress counted from the run's own steps."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime

import pytest
import yaml
from databricks.sdk.service.workspace import ExportFormat

from tests.harness import Service, make_settings, running_service
from tests.workspace_items import NOTEBOOK, make_job, make_pipeline

START = "/Workspace/Shared/exports-test"
CONFIG = "/Workspace/Shared/dara/export/config.yml"


@pytest.fixture(scope="module")
def exporting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("exports"))) as svc:
        yield svc


def read(service: Service, path: str) -> str:
    exported = service.runtime.workspace.workspace.export(path, format=ExportFormat.RAW)
    return base64.b64decode(exported.content or "").decode()


def config_yaml(jobs: list[tuple[int, str, bool]], pipelines: list[tuple[str, str, bool]], active: bool = True) -> str:
    return yaml.safe_dump(
        {
            "workflows": [
                {"job_name": n, "job_id": i, "is_existing": True, "is_active": active, "export_libraries": lib}
                for i, n, lib in jobs
            ],
            "pipelines": [
                {
                    "pipeline_name": n,
                    "pipeline_id": i,
                    "is_existing": True,
                    "is_active": active,
                    "export_libraries": lib,
                }
                for i, n, lib in pipelines
            ],
            "initial_variables": {"v_start_path": START},
        },
        sort_keys=False,
    )


def test_a_missing_config_is_a_default_one(exporting: Service) -> None:
    view = exporting.http.get("/exports/config").json()

    assert view["exists"] is False and view["valid"] is True and view["path"] == CONFIG
    assert yaml.safe_load(view["yaml"]) == {
        "workflows": [],
        "pipelines": [],
        "initial_variables": {"v_start_path": "/Workspace/Shared/dara/exports"},
    }
    nothing = exporting.http.post("/exports", json={})  # nothing saved to export
    assert nothing.status_code == 404, nothing.text
    assert nothing.json()["detail"] == f"no export config at {CONFIG}; save one first (PUT /exports/config)"


def test_problems_are_placed_and_nothing_invalid_is_saved(exporting: Service) -> None:
    bad = "workflows:\n  - {job_name: x, job_id: -3}\ninitial_variables: {v_start_path: relative/path}\n"
    checked = exporting.http.post("/exports/config/check", json={"yaml": bad}).json()
    aliases = exporting.http.post("/exports/config/check", json={"yaml": "a: &x [1]\nb: *x\n"}).json()
    saved = exporting.http.put("/exports/config", json={"yaml": bad})
    twice = config_yaml([(1, "a", False), (1, "b", False)], [])

    assert checked["valid"] is False
    assert {tuple(p["loc"]) for p in checked["problems"]} == {
        ("workflows", 0, "job_id"),
        ("initial_variables", "v_start_path"),
    }
    assert aliases["valid"] is False and "aliases" in aliases["problems"][0]["msg"]
    assert saved.status_code == 422 and exporting.http.get("/exports/config").json()["exists"] is False
    assert saved.json()["detail"] == checked["problems"], saved.text  # the same problems, placed the same
    assert (
        "same id more than once: 1"
        in exporting.http.post("/exports/config/check", json={"yaml": twice}).json()["problems"][0]["msg"]
    )
    elsewhere = exporting.http.put("/exports/config", json={"yaml": "x", "path": "/etc/passwd"})
    assert elsewhere.status_code == 422, elsewhere.text
    [problem] = elsewhere.json()["detail"]
    assert problem["loc"] == ["body", "path"], problem
    assert problem["msg"].startswith("String should match pattern '^/(Workspace|Users|Shared)/"), problem


def test_data_from_the_page_comes_back_as_yaml(exporting: Service) -> None:
    config = {
        "workflows": [{"job_name": "a", "job_id": 5}],
        "pipelines": [],
        "initial_variables": {"v_start_path": START, "other": 1},
    }
    view = exporting.http.post("/exports/config/check", json={"config": config}).json()

    assert view["valid"] is True
    assert yaml.safe_load(view["yaml"])["workflows"] == [
        {"job_name": "a", "job_id": 5, "is_existing": True, "is_active": True, "export_libraries": False}
    ]
    assert yaml.safe_load(view["yaml"])["initial_variables"] == {"v_start_path": START, "other": 1}
    assert view["summary"]["total"] == 1


def test_an_export_writes_definitions_bundles_and_notebooks(exporting: Service) -> None:
    w = exporting.runtime.workspace
    with_notebooks = make_job(w, "nightly orders", scheduled=True)
    plain = make_job(w, "weekly")
    pipeline = make_pipeline(w, "orders_bronze")
    text = config_yaml(
        [(with_notebooks, "nightly orders", True), (plain, "weekly", False)], [(pipeline, "orders_bronze", True)]
    )
    saved = exporting.http.put("/exports/config", json={"yaml": text})
    assert saved.status_code == 200, saved.text
    assert exporting.http.get("/exports/config").json()["yaml"] == text  # round trip through the workspace

    started = exporting.http.post("/exports", json={})
    assert started.status_code == 201, started.text
    run = exporting.wait_for(started.json()["run_id"])
    progress = exporting.http.get(f"/exports/{run['id']}").json()
    job_dir = f"{START}/jobs/nightly_orders-{with_notebooks}"
    bundle = yaml.safe_load(read(exporting, f"{job_dir}/resources/nightly_orders.job.yml"))
    pipeline_bundle = yaml.safe_load(
        read(exporting, f"{START}/pipelines/orders_bronze-{pipeline}/resources/orders_bronze.pipeline.yml")
    )

    assert run["status"] == "done", run
    assert (progress["total"], progress["done"], progress["failed"]) == (3, 3, 0)
    assert [item["state"] for item in progress["items"]] == ["done", "done", "done"]
    # Each item's time is its step's, from its start to its end, as the run records them.
    measured = [
        (datetime.fromisoformat(step["finished_at"]) - datetime.fromisoformat(step["started_at"])).total_seconds()
        for step in run["steps"]
        if step["name"] in ("export_job", "export_pipeline")
    ]
    assert [item["seconds"] for item in progress["items"]] == pytest.approx(measured, abs=1e-6)
    assert progress["mean_item_seconds"] == pytest.approx(sum(measured) / 3, abs=1e-6)
    assert progress["remaining_seconds"] is None  # nothing is left
    assert json.loads(read(exporting, f"{job_dir}/job.json")) == w.jobs.get(with_notebooks).settings.as_dict()
    assert bundle["resources"]["jobs"]["nightly_orders"]["schedule"]["quartz_cron_expression"] == "0 0 6 * * ?"
    assert read(exporting, f"{job_dir}/src/dara_demo.py") == read(exporting, NOTEBOOK)
    assert f"{job_dir}/src/dara_demo.py" in progress["items"][0]["files"]
    assert not any("/src/" in path for path in progress["items"][1]["files"])  # export_libraries: false
    assert pipeline_bundle["resources"]["pipelines"]["orders_bronze"]["libraries"] == [{"notebook": {"path": NOTEBOOK}}]
    assert f"{START}/pipelines/orders_bronze-{pipeline}/src/dara_demo.py" in progress["items"][2]["files"]


def test_an_item_that_fails_is_reported_and_the_rest_exported(exporting: Service) -> None:
    w = exporting.runtime.workspace
    real = make_job(w, "survivor")
    text = config_yaml([(987654, "gone", False), (real, "survivor", False)], [])
    assert exporting.http.put("/exports/config", json={"yaml": text}).status_code == 200
    run = exporting.wait_for(exporting.http.post("/exports", json={}).json()["run_id"])
    progress = exporting.http.get(f"/exports/{run['id']}").json()

    assert run["status"] == "done" and [f["id"] for f in run["result"]["failed"]] == ["987654"]
    assert [item["state"] for item in progress["items"]] == ["failed", "done"]
    assert "987654" in progress["items"][0]["error"] or "does not exist" in progress["items"][0]["error"]


def test_a_config_that_selects_nothing_active_is_not_exported(exporting: Service) -> None:
    assert (
        exporting.http.put(
            "/exports/config", json={"yaml": config_yaml([(1, "x", False)], [], active=False)}
        ).status_code
        == 200
    )
    refused = exporting.http.post("/exports", json={})

    assert refused.status_code == 422 and "no active" in refused.json()["detail"]
    unknown = exporting.http.get("/exports/nope-404")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no run 'nope-404'", unknown.text
