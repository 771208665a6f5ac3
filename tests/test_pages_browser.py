"""The technicians' pages in Chromium, at 360 px (a phone) and 1400 px (a wall screen),
against a real ``bridgemon run`` on loopback. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridgemon.events import ZONE
from tests.browser import (  # noqa: F401 - chromium is a fixture
    browser,
    chromium,
    horizontal_overflow,
    needs_browser,
    screenshot,
    wait_until,
)
from tests.conftest import free_port, needs_root
from tests.daemon_process import Daemon
from tests.helpers import wait_for_sync, write_inventory

pytestmark = [needs_root, needs_browser]

EVIL = "<script>document.title='pwned'</script>"
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.60.0.1",
     "contact": {"name": "Trần Văn Tỉnh", "phone": "0235 3810 000"}},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.60.2.1", "contact": {"name": "Lê Thị Huyện", "phone": "+84 905 111 222"}},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.60.2.10",
     "contact": {"name": "Nguyễn Văn Xã — cán bộ kỹ thuật phụ trách điểm cầu phường",
                 "phone": "0905 123 456"}},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": "502",
     "address": "127.60.2.11"},
    {"id": "20341", "name": f"Phường {EVIL}", "level": "commune", "parent": "502",
     "address": "127.60.2.12"},
    {"id": "516", "name": "Huyện Nam Trà My", "level": "district", "parent": "49",
     "address": "127.60.16.1"},
    {"id": "20380", "name": "Xã Trà Mai", "level": "commune", "parent": "516",
     "address": "127.60.16.10"},
]
# Every site misses thresholds of microseconds: "not ready", with a reason in Vietnamese.
STRICT = '\n[profiles.default.thresholds]\nrtt_good = "0.001ms"\nrtt_bad = "0.002ms"\n'


def _event() -> str:
    begins = datetime.now(ZONE) + timedelta(minutes=30)
    # Its 1-hour pre-test is missed already: the daemon runs it once at start.
    return f'''
[[events]]
id = "giao-ban"
title = "Giao ban {EVIL}"
start = "{begins.isoformat()}"
duration = "2h"
participants = "under:502"
pretests = ["1h"]
'''


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("pages")
    port = free_port()
    config = write_inventory(directory / "sites.toml", SITES, port=port,
                             extra=STRICT + _event())
    running = Daemon(config, port, directory / "daemon.log")
    try:
        wait_for_sync(lambda: _summary(running)["unknown"] == 0, 20, "every site judged")
        wait_for_sync(lambda: _runs(running) >= 1, 30, "the missed pre-test run")
        yield running
    finally:
        running.stop()


def _summary(daemon: Daemon) -> dict[str, int]:
    status, body = daemon.json("GET", "/api/v1/sites")
    return dict(body["summary"]) if status == 200 else {"unknown": -1}


def _runs(daemon: Daemon) -> int:
    status, body = daemon.json("GET", "/api/v1/test-runs?event=giao-ban")
    return sum(run["status"] == "complete" for run in body["test_runs"]) if status == 200 else 0


def _run_id(daemon: Daemon) -> str:
    _, body = daemon.json("GET", "/api/v1/test-runs?event=giao-ban")
    return str(body["test_runs"][0]["run_id"])


def _by_css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _all_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _pages(daemon: Daemon) -> dict[str, str]:
    return {"overview": "/", "filtered": "/?q=tan+thanh", "site": "/sites/20335",
            "district": "/sites/502", "event": "/events/giao-ban",
            "test-run": f"/test-runs/{_run_id(daemon)}", "missing": "/sites/nope"}


@pytest.mark.parametrize("width", [360, 1400])
def test_every_page_fits_the_screen_and_shows_markup_as_text(daemon: Daemon,
                                                             width: int) -> None:
    with browser(width) as driver:
        for name, path in _pages(daemon).items():
            driver.get(daemon.url(path))
            wait_until(driver, lambda d: d.execute_script(
                "return document.readyState") == "complete", f"{path} loaded")
            screenshot(driver, f"{name}-{width}")
            # Laid out for the screen's width (a page without a viewport is laid out at
            # 980 px and shrunk: nothing scrolls, and nothing can be read either).
            assert driver.execute_script("return window.innerWidth") == width, path
            assert horizontal_overflow(driver) <= 0, f"{path} scrolls sideways at {width} px"
            # The site name and the event title holding <script> are shown as text, and
            # never ran (it would have renamed the page).
            assert driver.title != "pwned", path
            if name in ("overview", "district", "event"):
                assert EVIL in _by_css(driver, "body").text, path
            assert driver.find_elements("css selector", "script:not([src])") == [], path


def test_the_overview_has_what_a_technician_needs_first(daemon: Daemon) -> None:
    with browser(360) as driver:
        driver.get(daemon.url("/"))
        urgent = _by_css(driver, "[data-live=urgent]").text
        assert "Điểm cầu cần xử lý (7)" in urgent and "độ trễ" in urgent
        # Tap to call the technician.
        call = _by_css(driver, "#urgent-20335 a.tel")
        assert call.get_attribute("href") == "tel:0905123456"
        # Since when, and the conference with how many of its sites are not ready.
        assert re.search(r"\d\d:\d\d \d\d/\d\d \((dưới 1 phút|\d+ phút)\)", urgent), urgent
        events = _by_css(driver, "[data-live=events]").text
        assert "4 điểm cầu, 4 chưa sẵn sàng" in events and EVIL in events


def test_search_without_diacritics_and_by_district(daemon: Daemon,
                                                  chromium: Callable[[int], Any],  # noqa: F811
                                                  ) -> None:
    from selenium.webdriver.common.keys import Keys

    driver = chromium(360)  # closed by the fixture
    driver.get(daemon.url("/"))
    box = _by_css(driver, "#q")
    box.send_keys("tan thanh" + Keys.ENTER)
    wait_until(driver, lambda d: "q=tan+thanh" in d.current_url, "the search submitted")
    listed = _by_css(driver, "#list").text
    assert "Phường Tân Thạnh" in listed and "Phường Phước Hòa" not in listed
    # The filtered view is a link one can send.
    driver.get(daemon.url("/?district=516"))
    listed = _by_css(driver, "#list").text
    assert "Xã Trà Mai" in listed and "Phường Tân Thạnh" not in listed


def test_the_site_page_draws_its_chart(daemon: Daemon) -> None:
    with browser(1400) as driver:
        driver.get(daemon.url("/sites/20335"))
        assert "Phường Tân Thạnh" in _by_css(driver, "h1").text
        charts = _all_css(driver, "figure.chart svg")
        assert len(charts) == 3
        lines = _all_css(driver, "figure.chart svg polyline")
        assert lines, "no line drawn from the rounds measured so far"
        box = charts[0].rect
        assert box["width"] > 100 and box["height"] > 30
        assert "Thành phố Tam Kỳ" in _by_css(driver, ".facts").text  # its parent
        driver.get(daemon.url("/sites/502"))
        assert "Phường Tân Thạnh" in _by_css(driver, "[data-live=site_children]").text


def test_live_update_changes_a_count_and_keeps_the_users_place(daemon: Daemon,
                                                              tmp_path: Path) -> None:
    with browser(360) as driver:
        driver.get(daemon.url("/"))
        counts = _by_css(driver, "[data-live=counts]").text
        assert counts.splitlines()[:2] == ["0", "Sẵn sàng"], counts
        # The user opens the per-district table, scrolls and types in the search box.
        _by_css(driver, "#districts summary").click()
        _by_css(driver, "#q").send_keys("tra my")
        driver.execute_script("window.scrollTo(0, 200)")
        marker = driver.execute_script("window.__kept = 1; return window.__kept")
        # Thresholds back to the defaults: every site becomes ready, without a page load.
        write_inventory(daemon.config, SITES, port=daemon.port, extra=_event())
        status, _, _ = daemon.request("POST", "/-/reload")
        assert status == 200

        def ready_shown(d: Any) -> bool:
            text = _by_css(d, "[data-live=counts]").text
            return text.splitlines()[:2] == [str(len(SITES)), "Sẵn sàng"]

        wait_until(driver, ready_shown, "the live count of ready sites", timeout=40)
        assert driver.execute_script("return window.__kept") == marker  # the same page
        assert _by_css(driver, "#districts").get_attribute("open") is not None
        assert _by_css(driver, "#q").get_attribute("value") == "tra my"
        assert driver.execute_script("return window.scrollY") > 0
        screenshot(driver, "overview-live-360")
    # Put the strict thresholds back for the other tests of this module.
    write_inventory(daemon.config, SITES, port=daemon.port, extra=STRICT + _event())
    daemon.request("POST", "/-/reload")
    time.sleep(0.1)
    assert json.loads(daemon.request("GET", "/healthz")[2])["status"] == "ok"
