"""An operator's conference day in Chromium at 360 px (a phone) and 1400 px (a wall screen):
sign in, open the conference, press "Chạy kiểm tra ngay", watch the run page's progress
change without reloading, take a site with a note; a viewer sees no button; a session that
ends while a page is open says so and links to sign-in. A real ``bridgemon run`` with users
in a child process on loopback; screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import (
    browser,
    horizontal_overflow,
    needs_browser,
    screenshot,
    wait_until,
)
from tests.conftest import free_port, needs_root
from tests.daemon_process import Daemon
from tests.helpers import wait_for_sync
from tests.test_operator_actions import EVENT, event_toml
from tests.test_web_auth import OPERATOR, PASSWORD, TOKEN, VIEWER, web_toml, write_config

pytestmark = [needs_root, needs_browser]

# A run long enough to be watched: 100 echoes 100 ms apart, ~10 s per site (all at once).
SLOW_TESTS = 'count = 100\nspacing = "100ms"'
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("operator")
    port = free_port()
    path = write_config(directory, web_toml(tls=False) + event_toml(), port)
    text = path.read_text(encoding="utf-8")
    assert 'count = 2\nspacing = "20ms"' in text
    path.write_text(text.replace('count = 2\nspacing = "20ms"', SLOW_TESTS), encoding="utf-8")
    running = Daemon(path, port, directory / "daemon.log")
    try:
        wait_for_sync(lambda: running.request("GET", "/healthz")[0] == 200, 20, "up")
        yield running
    finally:
        running.stop()


def _css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _all(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _sign_in(driver: Any, daemon: Daemon, name: str, path: str) -> None:
    driver.get(daemon.url(path))
    wait_until(driver, lambda d: "/login" in d.current_url, "sent to the sign-in page")
    _css(driver, "#name").send_keys(name)
    _css(driver, "#password").send_keys(PASSWORD)
    _css(driver, "button[type=submit]").click()
    wait_until(driver, lambda d: d.current_url == daemon.url(path), f"back on {path}")


def _loaded(driver: Any) -> None:
    wait_until(driver, lambda d: d.execute_script("return document.readyState") == "complete",
               "page loaded")


@pytest.mark.parametrize("width", [360, 1400])
def test_an_operator_runs_the_test_now_and_takes_a_site(daemon: Daemon, width: int) -> None:
    with browser(width) as driver:
        _sign_in(driver, daemon, OPERATOR, f"/events/{EVENT}")
        assert _css(driver, "#signed-in").text == OPERATOR
        screenshot(driver, f"operator-event-{width}")
        assert horizontal_overflow(driver) <= 0

        _css(driver, "#run-now").click()
        wait_until(driver, lambda d: "/test-runs/" in d.current_url, "on the run page")
        _loaded(driver)
        assert OPERATOR in _css(driver, "main").text
        summary = _css(driver, "[data-live=run_summary]").text
        assert "đang chạy" in summary, summary
        screenshot(driver, f"operator-run-started-{width}")
        # Marked now: a reload would lose it. The progress must come in place.
        driver.execute_script("window.stillThisPage = true;")
        wait_until(driver, lambda d: "hoàn tất" in _css(d, "[data-live=run_summary]").text,
                   "the run completes on the page", timeout=45)
        assert driver.execute_script("return window.stillThisPage === true;")
        assert len(_all(driver, "[data-live=run_sites] tbody tr")) == 2
        screenshot(driver, f"operator-run-done-{width}")
        assert horizontal_overflow(driver) <= 0

        # Back on the conference: take the first site nobody holds, with a note.
        driver.get(daemon.url(f"/events/{EVENT}"))
        _loaded(driver)
        form = next(f for f in _all(driver, "form.ack-form") if _all(f, "button.take"))
        site = form.find_element("css selector", "input[name=site]").get_attribute("value")
        note = f"Đã gọi cán bộ kỹ thuật ({width} px)"
        form.find_element("css selector", "input[name=note]").send_keys(note)
        form.find_element("css selector", "button.take").click()
        wait_until(driver, lambda d: d.current_url.endswith(f"#site-{site}"), "taken")
        _loaded(driver)
        row = _css(driver, f"#site-{site}")
        assert OPERATOR in row.find_element("css selector", ".holder").text
        assert note in row.text and "Trả lại" in row.text
        screenshot(driver, f"operator-site-taken-{width}")
        assert horizontal_overflow(driver) <= 0

        # On the site's page: who holds it, and a note added by its form, newest first.
        driver.get(daemon.url(f"/sites/{site}"))
        _loaded(driver)
        assert f"{OPERATOR} đang xử lý cho hội nghị" in _css(driver, "#site-notes").text
        written = f"Đã khởi động lại codec lúc {width}"
        _css(driver, "#note-text").send_keys(written)
        _css(driver, "#add-note").click()
        wait_until(driver, lambda d: d.current_url.endswith("#site-notes"), "note saved")
        _loaded(driver)
        newest = _css(driver, "ol.notes li")
        assert written in newest.text and OPERATOR in newest.text
        screenshot(driver, f"operator-site-notes-{width}")
        assert horizontal_overflow(driver) <= 0


def _live_polls(driver: Any) -> int:
    return int(driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(function (e) { return e.name.indexOf('live=1') >= 0; }).length;"))


def test_a_note_being_typed_survives_live_updates(daemon: Daemon) -> None:
    for site in ("49", "502"):  # whatever earlier tests took
        status, _ = daemon.json("POST", f"/api/v1/events/{EVENT}/acks",
                                {"site": site, "action": "release"}, AUTH)
        assert status == 200
    with browser(1400) as driver:
        _sign_in(driver, daemon, OPERATOR, f"/events/{EVENT}")
        typed = "đang gõ dở, chưa bấm"
        _css(driver, "#site-49 input[name=note]").send_keys(typed)
        # Someone else takes the other site meanwhile: the part changes on the server.
        status, _ = daemon.json("POST", f"/api/v1/events/{EVENT}/acks",
                                {"site": "502", "note": "qua API"}, AUTH)
        assert status == 201
        polls = _live_polls(driver)
        wait_until(driver, lambda d: _live_polls(d) >= polls + 1, "a live poll", timeout=25)
        assert _css(driver, "#site-49 input[name=note]").get_attribute("value") == typed
        assert "qua API" not in _css(driver, "#site-502").text  # held back, not lost
        # Done typing (emptied, left): the next poll brings the news in.
        driver.execute_script("var f = document.querySelector('#site-49 input[name=note]');"
                              " f.value = ''; f.blur();")
        wait_until(driver, lambda d: "qua API" in _css(d, "#site-502").text,
                   "the held-back update arrives", timeout=25)


def test_a_viewer_sees_no_button_and_an_ended_session_says_so(daemon: Daemon) -> None:
    with browser(360) as driver:
        _sign_in(driver, daemon, VIEWER, f"/events/{EVENT}")
        assert _css(driver, "#signed-in").text == VIEWER
        assert _all(driver, "#run-now") == [] and _all(driver, "form.ack-form") == []
        assert "Chạy kiểm tra ngay" not in _css(driver, "body").text
        screenshot(driver, "viewer-event-360")
        # The session ends (here: its cookie is gone) while the page is open: the next
        # poll gets a 401 and the page says so, with a link to sign in again.
        driver.delete_cookie("bridgemon_session")
        wait_until(driver, lambda d: _all(d, "#sign-in-again"), "the page says so",
                   timeout=30)
        status = _css(driver, "#live-status").text
        assert "Phiên đăng nhập đã hết hạn" in status and "Mất kết nối" not in status
        link = _css(driver, "#sign-in-again").get_attribute("href")
        assert link == daemon.url(f"/login?next=%2Fevents%2F{EVENT}")
        screenshot(driver, "viewer-session-ended-360")


def test_no_password_in_the_log(daemon: Daemon) -> None:
    assert PASSWORD not in daemon.log()


