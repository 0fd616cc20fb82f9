"""A real headless Chromium for the page's tests (test_web.py, test_web_app.py): the driver,
and small helpers to run a script in the page and wait for what it answers.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them); without them the browser tests skip, unless IMGSEARCHD_REQUIRE_BROWSER=1
(set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Live, wait_for


def browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def start_browser() -> Iterator[Any]:
    """Chromium, headless, 1280x900, its console kept (a module fixture in each test module)."""
    found = browser_paths()
    if found is None:
        message = "no chromium and chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("IMGSEARCHD_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as ChromeService
    except ImportError:
        pytest.fail("selenium is a test dependency: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.add_argument("--disable-features=Translate,MediaRouter,OptimizationHints")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(executable_path=found[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a test module (``from page_browser import browser``)."""
    yield from start_browser()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's screenshot folder (``from page_browser import shots``)."""
    yield from screenshots(tmp_path_factory)


def screenshots(factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = factory.mktemp("screenshots")
    yield folder
    print(f"\nscreenshots of the page: {folder}")


def errors_in_console(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def wait_js(driver: Any, script: str, what: str, timeout: float = 30) -> Any:
    return wait_for(lambda: js(driver, script), timeout, what)


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait_js(driver, "return !document.querySelector('#nav').hidden", "the page to start")


def wait_indexed(live: Live, count: int) -> None:
    def settled() -> bool:
        status, stats = live.get("/stats")
        return status == 200 and stats["images"] == count and stats["pending"] == 0

    wait_for(settled, 120, f"{count} images indexed")


def results(driver: Any) -> list[dict[str, Any]]:
    """The result cards: name, folder, score, and whether the thumbnail has loaded."""
    return js(
        driver,
        """return Array.from(document.querySelectorAll('#results .card')).map(card => {
            const img = card.querySelector('img');
            return {name: card.querySelector('.name').textContent, title: card.querySelector('.name').title,
                    folder: card.querySelector('.folder').textContent, score: card.querySelector('.score').textContent,
                    loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth};
        })""",
    )


def message(driver: Any) -> str:
    """The search view's message line."""
    text: str = js(driver, "return document.querySelector('#search-message').textContent")
    return text
