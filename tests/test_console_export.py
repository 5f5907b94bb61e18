"""The workspace browser and an export, in a real browser, as a person would do it:
search, select (one with its libraries), save the config to the workspace, start the
export and watch its progress live to the end; and state kept in the URL."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
import yaml

import steps.export
from tests.browser import Browser
from tests.harness import Service, make_settings, running_service
from tests.workspace_items import make_job, make_pipeline


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(make_settings(tmp_path_factory.mktemp("console"))) as svc:
        w = svc.runtime.workspace
        for name in ("orders_daily", "orders_weekly", "inventory_refresh", "customers_sync", "marketing_spend"):
            make_job(w, name, scheduled=name.startswith("orders"), tags={"team": "sales"})
        for name in ("orders_bronze", "orders_silver", "customers_gold"):
            make_pipeline(w, name)
        yield svc


def type_into(browser: Browser, css: str, text: str) -> None:
    field = browser.find(css)
    field.clear()
    field.send_keys(text)


def row(browser: Browser, name: str) -> object:
    return next(r for r in browser.find_all("#items tbody tr") if name in r.text)


def listed(browser: Browser) -> list[str]:
    return [
        r.find_element("css selector", "b").text
        for r in browser.find_all("#items tbody tr")
        if r.find_elements("css selector", "b")
    ]


#: The folder an exported item's files go to: ``<start path>/jobs/<name>-<id>`` (or ``pipelines``).
ITEM_FOLDER = re.compile(r"^(.*/(?:jobs|pipelines)/[^/]+)/")


def hold_items_after_the_first(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The files of an export's first item are written at once, and those of the others
    once the returned event is set (the service runs in this process): until then the
    export is one item in, for the page to show."""
    write = steps.export.write
    release = threading.Event()
    first: list[str] = []

    def held(w: object, path: str, content: object) -> str:
        found = ITEM_FOLDER.match(path)
        assert found, f"{path} is not in an item's folder"
        if not first:
            first.append(found[1])
        if found[1] != first[0]:
            assert release.wait(60), "the test never let the export go on"
        return write(w, path, content)  # type: ignore[arg-type]

    monkeypatch.setattr(steps.export, "write", held)
    return release


def test_search_select_save_export_and_watch_it_finish(
    browser: Browser, console: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser.open(f"{console.url}/ui/workspace")
    browser.wait_for("the jobs listed", lambda: "orders_daily" in listed(browser))
    browser.wait_for("the default config", lambda: "v_start_path" in browser.find("#yaml").get_attribute("value"))

    type_into(browser, "#q", "ordrs")  # a typo: fuzzy search still finds them
    browser.wait_for("the search's matches", lambda: set(listed(browser)) == {"orders_daily", "orders_weekly"})
    row(browser, "orders_daily").find_element("css selector", ".pick").click()
    row(browser, "orders_daily").find_element("css selector", ".lib").click()
    row(browser, "orders_weekly").find_element("css selector", ".pick").click()
    browser.find(".tabs a[data-kind=pipelines]").click()
    type_into(browser, "#q", "gold")
    browser.wait_for("the pipeline found", lambda: listed(browser) == ["customers_gold"])
    row(browser, "customers_gold").find_element("css selector", ".pick").click()
    config = browser.wait_for(
        "the selection in the config",
        lambda: (c := yaml.safe_load(browser.find("#yaml").get_attribute("value"))) and len(c["pipelines"]) == 1 and c,
    )
    preview = browser.text("#preview")
    browser.screenshot("workspace-selection")

    assert [(w["job_name"], w["export_libraries"]) for w in config["workflows"]] == [
        ("orders_daily", True),
        ("orders_weekly", False),
    ]
    assert config["pipelines"][0]["pipeline_name"] == "customers_gold"
    assert "3 item(s)" in preview and "orders_daily" in preview and "notebooks and libraries" in preview
    assert "sel=" in browser.driver.current_url and "kind=pipelines" in browser.driver.current_url

    browser.find("#save").click()
    browser.wait_for("the config saved", lambda: "Saved to" in browser.text("#config-message"))
    saved = yaml.safe_load(console.http.get("/exports/config").json()["yaml"])
    assert saved == config

    release = hold_items_after_the_first(monkeypatch)  # so the page has progress to show before the end
    try:
        browser.find("#export").click()
        browser.wait_for("the export's page", lambda: "/ui/exports/export-" in browser.driver.current_url)
        browser.driver.execute_script("window.sameDocument = true")
        browser.wait_for("an item done, others not yet", lambda: browser.text(".counts") == "1 of 3 items done")
        browser.wait_for("an estimate of the time left", lambda: "left" in browser.text("#live"))
        browser.screenshot("export-running")
    finally:
        release.set()
    browser.wait_for("the export done", lambda: browser.find("h1 .s.done"))
    counts = browser.text(".counts")
    items = browser.find_all("tr.item")

    assert counts == "3 of 3 items done"
    assert [item.get_attribute("data-state") for item in items] == ["done", "done", "done"]
    assert browser.driver.execute_script("return window.sameDocument") is True  # updated in place
    assert "per item" in browser.text("#live")
    assert "/src/dara_demo.py" in items[0].text  # its notebook, as asked
    browser.screenshot("export-done")


def test_filters_page_and_selection_survive_a_reload(browser: Browser, console: Service) -> None:
    browser.open(f"{console.url}/ui/workspace?kind=jobs&schedule=unscheduled")
    unscheduled = {"dara-demo", "inventory_refresh", "customers_sync", "marketing_spend"}
    browser.wait_for("the unscheduled jobs", lambda: set(listed(browser)) == unscheduled)
    pick = browser.wait_for(
        "the list's checkboxes", lambda: row(browser, "marketing_spend").find_element("css selector", ".pick")
    )
    assert not pick.is_selected()
    pick.click()
    row(browser, "marketing_spend").find_element("css selector", "button.open").click()
    browser.wait_for("its details", lambda: "main" in browser.text("#detail .tasks"))
    browser.wait_for(
        "the selection in the URL",
        lambda: (
            "open=" in browser.driver.current_url and "marketing_spend" in browser.find("#yaml").get_attribute("value")
        ),
    )
    before = browser.driver.current_url

    browser.driver.refresh()
    browser.wait_for("the same list", lambda: set(listed(browser)) == unscheduled)
    browser.wait_for("the same details", lambda: "marketing_spend" in browser.text("#detail h3"))
    picked = browser.wait_for(
        "the same selection",
        lambda: row(browser, "marketing_spend").find_element("css selector", ".pick").is_selected(),
    )

    assert picked and browser.find("#schedule").get_attribute("value") == "unscheduled"
    assert browser.driver.current_url == before
    assert "marketing_spend" in browser.find("#yaml").get_attribute("value")
    browser.screenshot("workspace-detail")


def test_paging_through_the_workspace(browser: Browser, console: Service) -> None:
    browser.open(f"{console.url}/ui/workspace?kind=jobs")
    browser.wait_for("a full first page", lambda: len(listed(browser)) == 6)  # dara-demo and five more: one page
    assert browser.find("#next").get_attribute("disabled") is not None
