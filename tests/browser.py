"""The pages in a real browser: Debian's Chromium, headless, driven by Selenium.

``browser(width)`` gives a driver whose viewport is ``width`` CSS pixels wide (360: a
phone; 1400: a wall screen), and the ``chromium`` fixture one per call, closed at the end;
``screenshot(driver, name)`` saves what it shows under
test-artifacts/screenshots/ (gitignored) for a person to review; ``horizontal_overflow``
says by how many pixels a page is wider than its viewport (0: no sideways scrolling).
Tests using it are skipped where Chromium or its driver is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
WAIT = 15.0  # seconds a test waits for the page to show what it expects


def missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and shutil.which(Path(path).name) is None:
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


needs_browser = pytest.mark.skipif(missing() is not None, reason=missing() or "")


@contextmanager
def browser(width: int, height: int = 800) -> Iterator[Any]:
    """A headless Chromium with a viewport ``width`` x ``height`` CSS pixels."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--force-device-scale-factor=1",
                     "--hide-scrollbars", "--lang=vi", "--no-first-run",
                     # Nothing leaves the machine: no component updates, no safe browsing.
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-default-apps"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        # The window's outer size includes no chrome in headless mode; set the viewport
        # exactly through the DevTools protocol so "360" means 360 CSS pixels of page.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1,
            "mobile": width < 600})
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chromium() -> Iterator[Callable[[int], Any]]:
    """``chromium(360)``: a headless driver at that width, closed when the test ends."""
    with ExitStack() as stack:
        yield lambda width: stack.enter_context(browser(width))


def screenshot(driver: Any, name: str) -> Path:
    """The whole page (not only the viewport) as a PNG, for review."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    width = int(driver.execute_script("return window.innerWidth"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(max(height, 400), 6000), "deviceScaleFactor": 1,
        "mobile": width < 600})
    try:
        path.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600})
    return path


def horizontal_overflow(driver: Any) -> int:
    """How many CSS pixels the page is wider than its viewport."""
    return int(driver.execute_script(
        "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"))


def wait_until(driver: Any, condition: Any, what: str, timeout: float = WAIT) -> Any:
    """Until ``condition(driver)`` holds. An element the condition found may be replaced
    by a live update before it is read (stale): that is asked again, not a failure."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver, timeout, poll_frequency=0.2,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(condition, what)
