"""The sign-in page in a real browser (Debian's Chromium through Selenium) on a phone's
width: no horizontal scrolling, a wrong password shows its message, a right one lands on
the status page. A real ``bridgemon run`` in a child process (the browser's calls block).
Screenshots go to test-artifacts/screenshots/ for review."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port, needs_root
from tests.daemon_process import Daemon
from tests.test_web_auth import OTHER_PASSWORD, PASSWORD, VIEWER, web_toml, write_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"

pytestmark = [
    needs_root,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's chromium and chromium-driver (.ci/run installs "
                              "them)"),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # The driver is named here: Selenium Manager never looks for (or downloads) one.
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=360,780"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    # A phone: 360 CSS pixels wide, as the page's viewport meta sees it.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 360, "height": 780, "deviceScaleFactor": 2, "mobile": True})
    try:
        yield driver
    finally:
        driver.quit()


def no_horizontal_scroll(driver: Any) -> None:
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        " document.body.scrollWidth]")
    assert widths[1] == 360, widths
    assert max(widths[0], widths[2]) <= widths[1], widths


def test_signing_in_on_a_phone(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    config = write_config(tmp_path, web_toml(tls=False), port)
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        browser.get(daemon.url("/"))  # sent to the sign-in page
        WebDriverWait(browser, 10).until(expected_conditions.title_contains("Đăng nhập"))
        assert "/login?next=/" in browser.current_url
        no_horizontal_scroll(browser)
        browser.save_screenshot(str(SCREENSHOTS / "login-360.png"))

        browser.find_element(By.ID, "name").send_keys(VIEWER)
        browser.find_element(By.ID, "password").send_keys(OTHER_PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        message = WebDriverWait(browser, 15).until(
            expected_conditions.visibility_of_element_located((By.ID, "message")))
        assert message.text == "Tên đăng nhập hoặc mật khẩu không đúng."
        # The name is kept, the password is not.
        assert browser.find_element(By.ID, "name").get_attribute("value") == VIEWER
        assert browser.find_element(By.ID, "password").get_attribute("value") == ""
        no_horizontal_scroll(browser)
        browser.save_screenshot(str(SCREENSHOTS / "login-360-wrong-password.png"))

        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 15).until(expected_conditions.title_contains("Tình trạng"))
        assert browser.current_url == daemon.url("/")
        browser.save_screenshot(str(SCREENSHOTS / "login-360-signed-in.png"))
        # The session cookie is out of the page's reach (HttpOnly).
        assert browser.execute_script("return document.cookie") == ""
        assert {c["name"] for c in browser.get_cookies()} >= {"bridgemon_session"}
        assert "Mật khẩu" not in daemon.log() and PASSWORD not in daemon.log()
        assert OTHER_PASSWORD not in daemon.log()
    finally:
        daemon.stop()
