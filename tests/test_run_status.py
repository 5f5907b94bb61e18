"""What ``GET /runs/{id}`` makes of a run's promises, in the details mutation testing found
unchecked (app.services.run_status; docs/TESTING.md): which step results are the run's
own, the Databricks run a step started, and the refusal of an unknown pipeline.
"""

from __future__ import annotations

from tests.harness import Service, sign


def test_a_step_result_is_folded_into_the_runs_only_when_it_is_that_result(service: Service) -> None:
    """The run returns {step, value}: the step's own result differs, so it stays on the step."""
    started = service.http.post("/runs", json={"pipeline": "records_a_step_then_waits", "id": "status-fold"})
    assert started.status_code == 201, started.text
    service.wait_until("status-fold", "waiting")
    resolved = service.http.post(
        "/resolve", json={"id": "status-fold:2", "value": "v", "token": sign(service.http, "status-fold:2")}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": "status-fold:2", "state": "resolved", "already_settled": False}

    run = service.wait_for("status-fold")

    assert run["result"] == {"step": "/Volumes/main/default/landing/in.csv", "value": "v"}
    step, wait = run["steps"]
    assert (step["result"], step["result_is_run_result"]) == ("/Volumes/main/default/landing/in.csv", False)
    assert (wait["result"], wait["result_is_run_result"]) == ("v", False)


def test_the_demo_runs_databricks_run_carries_its_job(service: Service) -> None:
    jobs = service.runtime.workspace.jobs.list(name=service.runtime.settings.demo_job_name)
    [job] = list(jobs)
    started = service.http.post(
        "/runs", json={"pipeline": "notebook_job", "id": "status-job", "params": {"job": job.settings.name}}
    )
    assert started.status_code == 201, started.text

    run = service.wait_for("status-job")

    [databricks] = run["databricks_runs"]
    assert databricks["job_id"] == job.job_id
    assert databricks["url"].endswith(f"/jobs/{job.job_id}/runs/{databricks['run_id']}")


def test_an_unknown_pipeline_is_refused_naming_every_known_one(service: Service) -> None:
    known = sorted(pipeline["name"] for pipeline in service.http.get("/pipelines").json())

    refused = service.http.post("/runs", json={"pipeline": "nope"})

    assert refused.status_code == 404, refused.text
    assert refused.json()["detail"] == f"no pipeline named 'nope'; known: {', '.join(known)}"
