"""A real browser for the console's tests: headless Chromium from Debian's packages,
driven through Debian's chromedriver with selenium.

Fixture (imported by tests/conftest.py): ``browser`` (session scope), a :class:`Browser`
around one Chrome session. It reaches nothing but loopback: every other host name
resolves to nothing (``--host-resolver-rules``) and Chrome's own background traffic is
off, and :meth:`Browser.requests` lists every request the pages made (DevTools'
``Network`` events), so a test can prove a page loaded from DARA alone.

Where Chromium or chromedriver is missing the tests that use it are skipped, with one
line saying why (``scripts/test`` installs both with apt-get when it runs as root). With
``DARA_BROWSER_TESTS=required`` (set by ``.ci/run``) they fail instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from tests.postgres import Skipped

REQUIRED_ENV = "DARA_BROWSER_TESTS"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
#: How long a page may take to show what a test waits for.
PAGE_TIMEOUT = 30.0

T = TypeVar("T")


def unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"browser tests cannot run, and {REQUIRED_ENV}=required: {reason}", pytrace=False)
    raise Skipped(f"browser tests skipped: {reason}")


class Browser:
    """One headless Chromium, and the few things the console's tests ask of it."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        #: Requests the CSP refused, as of the last :meth:`requests`.
        self.blocked: list[str] = []

    def open(self, url: str) -> None:
        self.requests()  # forget what earlier pages asked for
        self.console_errors()  # and what they logged: a test sees its own page's errors only
        self.driver.get(url)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, what: str, condition: Callable[[], T | None | bool], timeout: float = PAGE_TIMEOUT) -> T:
        """Poll ``condition`` until it is truthy (exceptions count as not yet); its value."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = condition()
            except Exception as exc:  # noqa: BLE001 -- the element is not there yet, or was replaced
                last, value = exc, None
            if value:
                return value  # type: ignore[return-value]
            time.sleep(0.1)
        raise AssertionError(
            f"the page never showed {what} within {timeout}s (last error: {last}); url {self.driver.current_url}"
        )

    def text(self, css: str) -> str:
        return self.find(css).text

    def requests(self) -> list[str]:
        """URLs of every request the pages made since the last call (DevTools' log), but
        those the page's CSP stopped before they left the browser: see :attr:`blocked`."""
        urls: dict[str, str] = {}
        self.blocked: list[str] = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent":
                urls[params["requestId"] + params["request"]["url"]] = params["request"]["url"]
            elif message.get("method") == "Network.loadingFailed" and params.get("blockedReason") == "csp":
                for key in [key for key in urls if key.startswith(params["requestId"])]:
                    self.blocked.append(urls.pop(key))
        return list(urls.values())

    def console_errors(self) -> list[str]:
        """The browser console's errors since the last call: CSP violations show here."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def screenshot(self, name: str) -> Path:
        """Save the whole page, beyond the window, as docs/screenshots/<name>.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        width, height = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 4000), "scale": 1},
            },
        )
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _executable(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        unavailable("selenium is not installed (scripts/test installs the test extras)")
    chromium = _executable(CHROMIUM)
    driver_path = _executable(("chromedriver",))
    if chromium is None or driver_path is None:
        unavailable("no chromium or chromedriver on PATH (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, as on CI
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        # Nothing but loopback: any other host resolves to nothing.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=DriverService(executable_path=driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 -- a driver that does not match the browser, a missing library
        unavailable(f"chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
