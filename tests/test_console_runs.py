"""Starting, watching and cancelling a run from the console, in a real browser:
the form made from the pipeline's schema, its inline 422 errors, the run page's live
timeline (updated in place, never reloaded) and its cancel button."""

from __future__ import annotations

from tests.browser import Browser
from tests.harness import Service, sign


def fill(browser: Browser, css: str, text: str) -> None:
    field = browser.find(css)
    field.clear()
    field.send_keys(text)


def test_a_form_made_from_the_schema_shows_the_422_beside_its_field(browser: Browser, service: Service) -> None:
    browser.open(f"{service.url}/ui/start?pipeline=notebook_job")
    browser.wait_for("the job field", lambda: browser.find("#param-job"))
    labels = [label.text for label in browser.find_all("#params label")]
    fill(browser, "#param-job", "dara-demo")
    fill(browser, "#param-params", '{"name": 5}')  # a dict of strings, says the schema
    browser.find("#submit").click()
    error = browser.wait_for(
        "the server's 422 beside the field", lambda: browser.text('.field-error[data-for="params"]')
    )

    assert labels == ["Job *", "Params", "Url"]
    assert "valid string" in error
    assert "invalid" in browser.find("#param-params").get_attribute("class")
    assert "/ui/start" in browser.driver.current_url  # nothing was started
    assert service.http.get("/runs", params={"pipeline": "notebook_job"}).json()["runs"] == []
    browser.screenshot("start-form-error")


def test_start_from_the_form_watch_live_then_cancel(browser: Browser, service: Service) -> None:
    browser.open(f"{service.url}/ui/start?pipeline=waits_for_callback")
    browser.wait_for("the form", lambda: browser.find("#param-timeout_seconds"))
    fill(browser, "#run-id", "console-cancel")
    browser.find("#submit").click()
    browser.wait_for("the run's page", lambda: browser.driver.current_url.endswith("/ui/runs/console-cancel"))
    browser.wait_for("the wait in the timeline", lambda: "waiting" in browser.text("table.timeline"))
    browser.driver.execute_script("window.sameDocument = true")  # gone if the page reloads
    browser.screenshot("run-waiting")

    browser.find("button.cancel").click()
    browser.driver.switch_to.alert.accept()
    status = browser.wait_for("the run cancelled, in place", lambda: browser.find("h1 .s.cancelled"))
    run = service.http.get("/runs/console-cancel").json()

    assert status.text == "cancelled" and run["status"] == "cancelled"
    assert browser.driver.execute_script("return window.sameDocument") is True
    assert browser.find_all("button.cancel") == []
    assert browser.find("#live").get_attribute("data-final") == "true"
    browser.screenshot("run-cancelled")


def test_the_timeline_follows_a_run_to_its_end_without_a_reload(browser: Browser, service: Service) -> None:
    started = service.http.post(
        "/runs", json={"pipeline": "waits_then_sleeps", "id": "console-live", "params": {"seconds": 0.5}}
    )
    assert started.status_code == 201, started.text
    service.wait_until("console-live", "waiting")
    browser.open(f"{service.url}/ui/runs/console-live")
    browser.wait_for("the callback waiting", lambda: "0 of 1 steps and waits done" in browser.text(".progress"))
    browser.driver.execute_script("window.sameDocument = true")

    resolved = service.http.post(
        "/resolve", json={"id": "console-live:1", "value": 1, "token": sign(service.http, "console-live:1")}
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json() == {"id": "console-live:1", "state": "resolved", "already_settled": False}
    browser.wait_for("the run done", lambda: browser.find("h1 .s.done"))
    rows = browser.find_all("table.timeline tr.step")

    assert browser.driver.execute_script("return window.sameDocument") is True
    assert len(rows) == 2 and "sleep" in rows[1].text
    assert browser.text(".progress") == "2 of 2 steps and waits done"
    assert all(row.find_element("css selector", "svg.bar rect") for row in rows)
