"""The console behind DARA_API_TOKEN and behind the Databricks Apps proxy, in a real
browser: with a token, a browser signs in once and its session cookie opens the pages
and the API calls their scripts make; behind the proxy, the forwarded user is enough."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.security import SESSION_COOKIE
from tests.browser import Browser
from tests.harness import APPS_RUNTIME, Service, make_settings, running_service

TOKEN = "console-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(
        make_settings(tmp_path_factory.mktemp("guarded"), deploy_on_start=False, api_token=TOKEN)
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in APPS_RUNTIME.items():
            env.setenv(name, value)
        settings = make_settings(tmp_path_factory.mktemp("apps"), deploy_on_start=False, trust_forwarded_user=True)
        with running_service(settings) as svc:
            yield svc


def test_a_browser_signs_in_with_the_token_and_uses_the_console(browser: Browser, guarded: Service) -> None:
    browser.driver.delete_all_cookies()
    browser.open(f"{guarded.url}/ui/start?pipeline=waits_for_callback")
    browser.wait_for("the sign-in page", lambda: "/ui/login" in browser.driver.current_url)
    browser.find("#token").send_keys("not-the-token-at-all")
    browser.find("button[type=submit]").click()
    refused = browser.wait_for("the refusal", lambda: browser.text(".error"))
    browser.find("#token").send_keys(TOKEN)
    browser.find("button[type=submit]").click()
    browser.wait_for("the start form, where it was going", lambda: browser.find("#param-timeout_seconds"))
    browser.find("#run-id").send_keys("behind-token")
    browser.find("#submit").click()
    browser.wait_for("the run's page", lambda: browser.find("h1 .s.waiting"))
    cookie = browser.driver.get_cookie(SESSION_COOKIE)

    assert "not DARA_API_TOKEN" in refused
    assert browser.driver.current_url.endswith("/ui/runs/behind-token")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert TOKEN not in cookie["value"]
    run = guarded.http.get("/runs/behind-token", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert run["started_by"] == "api-token"
    browser.driver.delete_all_cookies()


def test_without_a_session_the_api_stays_closed(guarded: Service) -> None:
    page = guarded.http.get("/ui", headers={"Accept": "text/html"})
    api = guarded.http.get("/workspace/jobs")
    forged = httpx.get(f"{guarded.url}/workspace/jobs", headers={"Cookie": f"{SESSION_COOKIE}={'0' * 64}"})
    outside = guarded.http.get("/ui/login", params={"next": "https://evil.example/"})

    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui"
    assert api.status_code == 401 and forged.status_code == 401
    assert (
        api.json()["detail"]
        == forged.json()["detail"]
        == ("missing API token: no Authorization header; send `Authorization: Bearer <DARA_API_TOKEN>`")
    )
    assert outside.status_code == 422  # never sent on to another site
    [problem] = outside.json()["detail"]
    assert problem["loc"] == ["query", "next"] and "String should match pattern '^/ui" in problem["msg"], problem


def test_the_apps_proxy_user_needs_no_token(browser: Browser, behind_proxy: Service) -> None:
    browser.driver.execute_cdp_cmd("Network.enable", {})
    browser.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"X-Forwarded-Email": "ada@example.com"}})
    try:
        browser.open(f"{behind_proxy.url}/ui/workspace")
        browser.wait_for("the jobs listed", lambda: browser.find_all("#items tbody tr"))
        browser.open(f"{behind_proxy.url}/ui/start?pipeline=waits_for_callback")
        browser.wait_for("the start form", lambda: browser.find("#param-timeout_seconds"))
        browser.find("#run-id").send_keys("behind-proxy")
        browser.find("#submit").click()
        browser.wait_for("the run's page", lambda: browser.find("h1 .s.waiting"))
    finally:
        browser.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})

    assert (
        behind_proxy.http.get("/runs/behind-proxy", headers={"X-Forwarded-Email": "ada@example.com"}).json()[
            "started_by"
        ]
        == "ada@example.com"
    )
    anonymous = behind_proxy.http.get("/ui/workspace")  # no forwarded user: no page
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["detail"] == (
        "missing API token: no Authorization header; come through the Databricks Apps proxy, which sets "
        "X-Forwarded-Email"
    )
