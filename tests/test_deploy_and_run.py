"""Jobs from task graphs through the API: preview, validation, a durable deploy-and-run
on the local workspace, and a second deploy that changes nothing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.harness import Service


def deploy(service: Service, run_id: str, **body: object) -> dict:
    response = service.http.post("/jobs/deploy", json={"name": "orders", "folder": "task_graph", "id": run_id} | body)
    assert response.status_code == 201, response.text
    return service.wait_for(run_id, timeout=120)


def test_the_example_deploys_runs_and_reports_every_task(service: Service) -> None:
    run = deploy(service, "graph-run")

    assert run["status"] == "done", run["error"]
    result = run["result"]
    assert result["result"] == "SUCCESS"
    assert {task["task"]: task["result"] for task in result["tasks"]} == {
        "extract": "SUCCESS",
        "by_region": "SUCCESS",
        "by_product": "SUCCESS",
        "report": "SUCCESS",
    }
    names = [step["name"] for step in run["steps"] if step["kind"] == "step"]
    assert names == ["upload_task_files", "upsert_job", "run_job"]


def test_a_graph_whose_notebook_calls_back_waits_for_the_callback(service: Service) -> None:
    run = deploy(service, "graph-callback", name="callback-job", folder="callback_job")

    assert run["status"] == "done", run["error"]
    assert run["result"]["value"] == {"greeting": "hello callback job", "sum_of_squares": 5}
    callback = next(step for step in run["steps"] if step["kind"] == "callback")
    assert callback["result"] == run["result"]["value"]


def test_a_second_deploy_is_a_no_op(service: Service, monkeypatch) -> None:
    first = deploy(service, "graph-deploy-1", run=False)
    w = service.runtime.workspace
    before = w.jobs.get(first["result"]["job_id"]).settings
    resets: list[int] = []
    monkeypatch.setattr(w.jobs, "reset", lambda job_id, new_settings: resets.append(job_id))

    second = deploy(service, "graph-deploy-2", run=False)

    assert second["result"]["job_id"] == first["result"]["job_id"]
    assert resets == []
    assert w.jobs.get(first["result"]["job_id"]).settings == before


def test_preview_orders_tasks_by_level(service: Service) -> None:
    shown = service.http.get("/jobs/preview", params={"folder": "task_graph"}).json()
    svg = service.http.get("/jobs/preview", params={"folder": "task_graph", "format": "svg"})

    assert shown["levels"] == [["extract"], ["by_region", "by_product"], ["report"]]  # file order
    assert shown["order"][0] == "extract" and shown["order"][-1] == "report"
    assert svg.headers["content-type"].startswith("image/svg+xml")
    text = "".join(ET.fromstring(svg.text).itertext())
    assert all(task in text for task in shown["order"])


def test_an_invalid_graph_is_refused_with_every_problem_before_any_upload(service: Service) -> None:
    tasks = [
        {"name": "a", "file": "extract.py", "compute": "gpu", "depends_on": ["b"]},
        {"name": "b", "file": "missing.py", "compute": "etl-serverless", "depends_on": ["a"]},
    ]
    compute = {"etl-serverless": {"serverless": {"environment_version": "1"}}}

    response = service.http.post(
        "/jobs/deploy", json={"name": "bad", "folder": "task_graph", "compute": compute, "tasks": tasks}
    )

    assert response.status_code == 422
    problems = " | ".join(response.json()["detail"]["problems"])
    assert "gpu" in problems and "missing.py" in problems and "a -> b -> a" in problems


def test_folders_outside_the_jobs_root_are_refused(service: Service) -> None:
    outside = service.http.get("/jobs/preview", params={"folder": "../app"})
    missing = service.http.get("/jobs/preview", params={"folder": "nope"})

    assert outside.status_code == 422 and "outside DARA_JOBS_ROOT" in outside.text
    assert missing.status_code == 404, missing.text
    assert missing.json()["detail"] == "no task-graph folder 'nope' under DARA_JOBS_ROOT"
