"""The workspace's jobs and Lakeflow pipelines through GET /workspace/...: fuzzy search,
filters and server-side pages read through databricks-sdk's paginated listings of the
embedded workspace, and each item's details."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import workspace_browser
from tests.harness import Service, make_settings, running_service
from tests.workspace_items import NOTEBOOK, make_job, make_pipeline


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("browse"))) as svc:
        w = svc.runtime.workspace
        for index in range(7):
            make_job(
                w, f"orders_daily_{index}", scheduled=index % 2 == 0, tags={"team": "sales" if index < 4 else "ops"}
            )
        make_job(w, "inventory_refresh")
        for name in ("orders_bronze", "orders_silver", "customers_gold"):
            make_pipeline(w, name)
        yield svc


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ask the workspace for 2 items a request, so every listing really pages."""
    monkeypatch.setattr(workspace_browser, "LIST_PAGE_SIZE", 2)


def names(page: dict) -> list[str]:
    return [item["name"] for item in page["items"]]


def test_pages_follow_the_workspace_listing(stocked: Service, small_pages: None) -> None:
    first = stocked.http.get("/workspace/jobs", params={"limit": 3}).json()
    second = stocked.http.get("/workspace/jobs", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    pages, cursor = [], 0
    while cursor is not None and len(pages) < 10:  # bounded: a cursor that never ends fails below
        page = stocked.http.get("/workspace/jobs", params={"limit": 4, "cursor": cursor}).json()
        pages.append(names(page))
        cursor = page["next_cursor"]
    everything = [name for page in pages for name in page]

    assert names(first) == ["dara-demo", "orders_daily_0", "orders_daily_1"] and first["next_cursor"] == 3
    assert names(second) == ["orders_daily_2", "orders_daily_3", "orders_daily_4"]
    assert first["scanned"] == 4  # read only as far as the page (and one more) needs
    assert len(everything) == 9 and len(set(everything)) == 9


def test_fuzzy_search_ranks_matches_and_forgives_typos(stocked: Service, small_pages: None) -> None:
    typo = stocked.http.get("/workspace/jobs", params={"q": "inventry"}).json()
    fragment = stocked.http.get("/workspace/jobs", params={"q": "daily_3"}).json()
    nothing = stocked.http.get("/workspace/jobs", params={"q": "zzqqxx"}).json()
    pipelines = stocked.http.get("/workspace/pipelines", params={"q": "ordrs"}).json()

    assert names(typo) == ["inventory_refresh"]
    assert names(fragment)[0] == "orders_daily_3"
    assert names(nothing) == [] and nothing["next_cursor"] is None
    assert set(names(pipelines)) == {"orders_bronze", "orders_silver"}


def test_filters(stocked: Service) -> None:
    scheduled = stocked.http.get("/workspace/jobs", params={"schedule": "scheduled", "limit": 100}).json()
    ops = stocked.http.get("/workspace/jobs", params={"tag": "team=ops", "limit": 100}).json()
    nobody = stocked.http.get("/workspace/jobs", params={"creator": "someone@else"}).json()
    idle = stocked.http.get("/workspace/pipelines", params={"state": "IDLE"}).json()
    running = stocked.http.get("/workspace/pipelines", params={"state": "RUNNING"}).json()

    assert names(scheduled) == ["orders_daily_0", "orders_daily_2", "orders_daily_4", "orders_daily_6"]
    assert all(item["schedule"] == "0 0 6 * * ? (UTC)" for item in scheduled["items"])
    assert names(ops) == ["orders_daily_4", "orders_daily_5", "orders_daily_6"]
    assert names(nobody) == []
    assert len(idle["items"]) == 3 and running["items"] == []


def test_details_of_a_job_and_a_pipeline(stocked: Service) -> None:
    job_id = stocked.http.get("/workspace/jobs", params={"q": "orders_daily_0"}).json()["items"][0]["id"]
    run = stocked.runtime.workspace.jobs.run_now(int(job_id)).result()
    job = stocked.http.get(f"/workspace/jobs/{job_id}").json()
    pipeline_id = stocked.http.get("/workspace/pipelines", params={"q": "customers_gold"}).json()["items"][0]["id"]
    pipeline = stocked.http.get(f"/workspace/pipelines/{pipeline_id}").json()

    assert job["tasks"] == [{"key": "main", "kind": "notebook", "target": NOTEBOOK, "depends_on": [], "libraries": []}]
    assert job["schedule"] == "0 0 6 * * ? (UTC)" and job["tags"] == {"team": "sales"}
    # The demo notebook fails without a run to call back; the state is the workspace's.
    assert [(r["run_id"], r["state"]) for r in job["last_runs"]] == [(run.run_id, run.state.result_state.value)]
    assert job["last_runs"][0]["link"] == f"/ui/databricks/runs/{run.run_id}"
    assert pipeline["id"] == pipeline_id and pipeline["state"] == "IDLE"
    assert pipeline["creator"] == "brickhouse-local@invalid" and pipeline["libraries"] == [NOTEBOOK]


def test_unknown_items_and_bad_input_are_4xx(stocked: Service) -> None:
    def refusal(status: int, path: str, **params: object) -> object:
        response = stocked.http.get(path, params=params)
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        return detail if isinstance(detail, str) else [(problem["loc"], problem["msg"]) for problem in detail]

    assert refusal(404, "/workspace/jobs/999999") == "the workspace has no job 999999"
    assert refusal(404, "/workspace/pipelines/no-such-pipeline") == "the workspace has no pipeline 'no-such-pipeline'"
    assert refusal(422, "/workspace/pipelines/bad id!") == [
        (["path", "pipeline_id"], "String should match pattern '^[A-Za-z0-9-]{1,64}$'")
    ]
    assert refusal(422, "/workspace/jobs", schedule="sometimes") == [
        (["query", "schedule"], "Input should be 'any', 'scheduled' or 'unscheduled'")
    ]
    assert refusal(422, "/workspace/jobs", cursor=-1) == [
        (["query", "cursor"], "Input should be greater than or equal to 0")
    ]
