"""The API docs and the console's pages load from DARA alone, in a real browser that
can reach nothing but loopback: no CDN, no fonts host, and nothing the CSP refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import Browser
from tests.harness import Service, make_settings, running_service


@pytest.fixture(scope="module")
def offline_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("offline"))) as svc:
        yield svc


@pytest.fixture(scope="module")
def export_id(offline_service: Service) -> str:
    """Something for every page to show: a run with a Databricks run (the demo job, id 1),
    and an export of that job."""
    svc = offline_service
    svc.http.post("/runs", json={"pipeline": "notebook_job", "id": "offline-run", "params": {"job": "dara-demo"}})
    databricks_run = svc.wait_for("offline-run")["databricks_runs"][0]["run_id"]
    assert databricks_run == 1  # the page below is /ui/databricks/runs/1
    svc.runtime.workspace.jobs.wait_get_run_job_terminated_or_skipped(databricks_run)
    config = (
        "workflows: [{job_name: dara-demo, job_id: 1}]\ninitial_variables: {v_start_path: /Workspace/Shared/offline}\n"
    )
    svc.http.put("/exports/config", json={"yaml": config}).raise_for_status()
    export = svc.http.post("/exports", json={}).raise_for_status().json()["run_id"]
    svc.wait_for(export)
    return export


#: Pages whose picture docs/screenshots/ keeps (the others are taken where they are tested).
SCREENSHOTS = {"/ui": "runs", "/ui/databricks/runs/1": "databricks-run", "/ui/login": "login"}


def only_dara(service: Service, urls: list[str]) -> list[str]:
    """The requests that went anywhere but DARA (data: URLs are no request on the wire)."""
    return [url for url in urls if not url.startswith((service.url + "/", "data:", "blob:"))]


def test_swagger_ui_renders_every_operation_offline(browser: Browser, offline_service: Service) -> None:
    browser.open(f"{offline_service.url}/docs")
    operations = browser.wait_for("Swagger UI's operations", lambda: browser.find_all(".opblock-summary-path"))
    paths = {op.get_attribute("data-path") for op in operations}
    title = browser.text(".info .title")
    requests = browser.requests()

    assert "DARA" in title
    assert {"/runs", "/runs/{run_id}", "/pipelines"} <= paths
    assert only_dara(offline_service, requests) == [], requests
    assert f"{offline_service.url}/static/docs/swagger-ui-bundle.js" in requests
    assert f"{offline_service.url}/openapi.json" in requests
    assert browser.console_errors() == []  # no CSP violation, no failed load
    browser.screenshot("api-docs")


def test_redoc_renders_offline(browser: Browser, offline_service: Service) -> None:
    browser.open(f"{offline_service.url}/redoc")
    browser.wait_for("ReDoc's operations", lambda: browser.find_all("[data-section-id^='operation/']"))

    # ReDoc's "powered by" logo names its CDN; the page's CSP stops it in the browser.
    assert only_dara(offline_service, browser.requests()) == []
    assert browser.blocked == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert all("logo-mini.svg" in error for error in browser.console_errors())


@pytest.mark.parametrize(
    "path",
    [
        "/ui",
        "/ui/start",
        "/ui/workspace",
        "/ui/runs/offline-run",
        "/ui/databricks/runs/1",
        "/ui/exports/{export}",
        "/ui/login",
    ],
)
def test_console_pages_load_from_dara_alone(
    browser: Browser, offline_service: Service, export_id: str, path: str
) -> None:
    browser.open(f"{offline_service.url}{path.format(export=export_id)}")
    browser.wait_for("the page's navigation", lambda: browser.find("nav").is_displayed())
    # Let the page's scripts make their first calls before reading what it asked for.
    browser.wait_for(
        "the page's scripts to settle",
        lambda: browser.driver.execute_script("return document.readyState") == "complete",
    )
    requests = browser.requests()

    assert only_dara(offline_service, requests) == [], requests
    assert f"{offline_service.url}/static/console/console.css" in requests
    assert browser.console_errors() == []
    if path in SCREENSHOTS:
        browser.screenshot(SCREENSHOTS[path])
