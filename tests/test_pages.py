"""The technicians' pages, read as HTML and JSON: what they show, how they filter, what
they answer to bad input, and that they stay bounded at 12,000 sites. (In a real browser:
tests/test_pages_browser.py.)"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bridgemon.board import Board
from bridgemon.config import load_config, parse_config
from bridgemon.daemon import Monitor
from bridgemon.events import ZONE
from bridgemon.snapshot import PingerFigures, ReloadFigures, RoundFigures, Snapshot
from bridgemon.trend import Point
from bridgemon.web.pages_common import ago, tel
from bridgemon.web.pages_event import ROWS_SHOWN, event_context
from bridgemon.web.pages_site import chart
from bridgemon.web.status_page import PAGE_SIZE, PROBLEMS_SHOWN, PageQuery, overview_context
from bridgemon.windows import WindowStore
from tests.conftest import free_port, needs_root
from tests.helpers import aget, await_for, inventory_toml, write_inventory
from tests.test_web_hardening import assert_page_obeys_its_policy
from tests.test_windows import icmp_round

NOW = 1_790_000_000.0
UP = (0.010, 0.011, 0.012)
DOWN = (None, None, None)
SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.60.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.60.2.1", "contact": {"name": "Lê Thị Huyện", "phone": "+84 905 111 222"}},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.60.2.10"},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": "502",
     "address": "127.60.2.11"},
    {"id": "516", "name": "Huyện Nam Trà My", "level": "district", "parent": "49",
     "address": "127.60.16.1"},
    {"id": "20380", "name": "Xã Trà Mai", "level": "commune", "parent": "516",
     "address": "127.60.16.10"},
]
LEVELS = ["province", "district", "commune"]


def _event(title: str = "Giao ban tháng", participants: str = "under:502") -> str:
    begins = datetime.fromtimestamp(NOW, ZONE) + timedelta(hours=3)
    return (f'\n[[events]]\nid = "giao-ban"\ntitle = "{title}"\nstart = "{begins.isoformat()}"'
            f'\nparticipants = "{participants}"\n')


def snapshot(sites: list[dict[str, object]], rounds: dict[str, list[tuple[float, tuple]]],
             *, events: str = "", taken_at: float = NOW) -> Snapshot:
    """A snapshot as the daemon builds it: rounds recorded one by one, judged by a Board."""
    config = parse_config(inventory_toml(sites, port=9, interval="10s", levels=LEVELS,
                                         extra=events), Path("t.toml"))
    inventory = config.inventory
    windows = WindowStore(window=3)
    windows.sync(inventory, 3)
    board = Board()
    board.sync(inventory, windows.sites, NOW - 100)
    for site_id, recorded in rounds.items():
        site = inventory.sites[site_id]
        for at, rtts in recorded:
            windows.record(site_id, site.probe_key(), icmp_round(at, site.address, rtts))
            board.update(site_id, at)
    return Snapshot(
        taken_at=taken_at, started_at=NOW - 100, inventory=inventory,
        sites=dict(board.views), order=inventory.order,
        rounds=(RoundFigures(10.0, len(sites), 7, 0, NOW - 1, 0.8),),
        pinger=PingerFigures(21, 20, 0, {"ipv4": "raw"}),
        reload=ReloadFigures(True, NOW - 100, NOW - 100, ()), events=config.events,
    )


def tam_ky_down() -> Snapshot:
    up = [(NOW - 90, UP)]
    return snapshot(SITES, {
        "49": up, "502": up, "516": up, "20380": up,
        "20335": [(NOW - 90, UP), (NOW - 60, DOWN)],  # not ready since NOW - 60
        "20338": [(NOW - 90, UP), (NOW - 80, UP)],
    }, events=_event())


def test_the_overview_says_since_when_and_whom_to_call() -> None:
    context = overview_context(tam_ky_down())
    (problem,) = context["problems"]
    assert problem["id"] == "20335" and problem["state"] == "not_ready"
    assert problem["since"] == datetime.fromtimestamp(NOW - 60, ZONE).strftime("%H:%M %d/%m")
    assert problem["ago"] == "1 phút"
    assert problem["parent"] == "Thành phố Tam Kỳ" and problem["parent_id"] == "502"
    assert "không phản hồi 3 gói ping" in problem["reasons"]
    assert problem["tel"] is None  # its own technician only: it has none
    assert {c[0]: c[2] for c in context["counts"]} == {
        "ready": 5, "degraded": 0, "not_ready": 1, "parent_down": 0, "unknown": 0}


def test_counts_per_district_and_the_conference_line() -> None:
    context = overview_context(tam_ky_down())
    districts = {d["id"]: d["counts"] for d in context["districts"]}
    assert set(districts) == {"502", "516"}  # the level below the root
    assert districts["502"]["not_ready"] == 1 and districts["502"]["ready"] == 2
    assert districts["516"]["ready"] == 2
    (event,) = context["events"]
    assert (event["participants"], event["not_ready"]) == (3, 1)  # 502 and its communes


def test_filters_by_name_without_diacritics_by_district_and_verdict() -> None:
    snap = tam_ky_down()
    ids = lambda **q: [r["id"] for r in overview_context(snap, PageQuery(**q))["rows"]]  # noqa: E731
    assert ids(text="tam ky") == ["502"]
    assert ids(text="TRA MAI") == ["20380"]
    assert ids(text="20338") == ["20338"]
    assert ids(district="502") == ["502", "20335", "20338"]
    assert ids(district="502", verdict="ready") == ["502", "20338"]
    assert ids(district="nope") == [site["id"] for site in SITES]  # unknown: no filter
    # The need-work list follows the filter too.
    assert overview_context(snap, PageQuery(district="516"))["problems"] == []
    assert PageQuery(text="tam ky", district="502", page=1).link(page=2) == \
        "/?q=tam+ky&district=502&page=2"
    assert PageQuery().link(live=1) == "/?live=1"


def test_the_conference_page_compares_now_and_the_latest_run() -> None:
    snap = tam_ky_down()
    context = event_context(snap, "giao-ban")
    assert context is not None
    assert context["rows"][0]["id"] == "20335"  # worst first
    assert context["not_ready"] == 1 and context["total"] == 3
    assert context["run"] is None and context["rows"][0]["run_label"] == "chưa kiểm tra"
    assert event_context(snap, "nope") is None


def test_twelve_thousand_sites_render_bounded_pages() -> None:
    sites: list[dict[str, object]] = [
        {"id": "1", "name": "Tỉnh", "level": "province", "address": "127.61.0.1"}]
    for d in range(40):
        sites.append({"id": f"d{d}", "name": f"Huyện {d}", "level": "district", "parent": "1",
                      "address": f"127.61.{d}.1"})
        for c in range(299):
            sites.append({"id": f"c{d}-{c}", "name": f"Xã {d}-{c}", "level": "commune",
                          "parent": f"d{d}", "address": f"127.62.{d}.{c % 250 + 1}"})
    down = {str(s["id"]): [(NOW - 10, DOWN)] for s in sites[::20]}
    snap = snapshot(sites, down, events=_event("Toàn tỉnh", "*"))
    assert len(snap.inventory) == 12_001
    started = time.perf_counter()
    context = overview_context(snap, PageQuery(page=3))
    elapsed = time.perf_counter() - started
    assert len(context["rows"]) == PAGE_SIZE and len(context["problems"]) == PROBLEMS_SHOWN
    # Never probed: unknown, so every site needs work; the not-ready ones come first.
    assert context["problems_total"] == 12_001
    assert {p["state"] for p in context["problems"]} == {"not_ready"}
    assert len(context["districts"]) == 40
    assert elapsed < 2.0, f"{elapsed:.2f} s"  # measured ~0.1 s; generous for a busy CI
    event = event_context(snap, "giao-ban")
    assert event is not None and event["total"] == 12_001
    assert len(event["rows"]) == ROWS_SHOWN and event["hidden"] == 12_001 - ROWS_SHOWN
    assert {row["state"] for row in event["rows"]} == {"not_ready"}  # worst first
    filtered = overview_context(snap, PageQuery(text="xa 7-12"))
    assert [r["id"] for r in filtered["rows"]] == ["c7-12"] + [
        f"c7-{n}" for n in range(120, 130)]


def test_the_chart_draws_runs_of_points_and_leaves_gaps() -> None:
    points = [Point(NOW + i * 300, rtt, None, None) for i, rtt in
              enumerate([None, 10.0, 20.0, None, 40.0, None])]
    drawn = chart(points, "rtt_ms", "Độ trễ (RTT)", "ms")
    assert len(drawn["segments"]) == 2  # 10-20, then 40 alone (made a visible dash)
    assert all(" " in segment for segment in drawn["segments"])
    assert drawn["top"] == "50" and drawn["latest"] == "40,0"
    empty = chart(points, "loss_pct", "Mất gói", "%")
    assert empty["empty"] and empty["segments"] == [] and empty["latest"] == "—"


@pytest.mark.parametrize(("phone", "link"), [
    ("0905 123 456", "0905123456"), ("+84 (905) 111-222", "+84905111222"),
    ("0235.3810.000 máy lẻ 12", "02353810000"), ("gọi 0905", None), ("", None),
    (None, None), ("--", None),
])
def test_tel_links(phone: str | None, link: str | None) -> None:
    assert tel(phone) == link


def test_durations_in_words() -> None:
    assert [ago(s) for s in (5, 125, 3600, 3 * 3600 + 300, 2 * 86400 + 4 * 3600, 86400)] == [
        "dưới 1 phút", "2 phút", "1 giờ", "3 giờ 5 phút", "2 ngày 4 giờ", "1 ngày"]


# -- served ------------------------------------------------------------------------------


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Monitor]:
    path = write_inventory(tmp_path / "sites.toml", SITES, port=free_port(), levels=LEVELS)
    running = Monitor(load_config(path))
    await running.start()
    yield running
    await running.stop()


def url(monitor: Monitor, path: str) -> str:
    assert monitor.bound is not None
    return f"http://{monitor.bound[0]}:{monitor.bound[1]}{path}"


@needs_root
async def test_pages_answer_bad_input_with_a_page_in_vietnamese(monitor: Monitor) -> None:
    for path, status, words in [
        ("/sites/nope", 404, "Không tìm thấy điểm cầu"),
        ("/events/nope", 404, "Không tìm thấy hội nghị"),
        ("/test-runs/nope", 404, "Không tìm thấy lần kiểm tra"),
        ("/?verdict=nonsense", 400, "Không có trạng thái"),
        ("/?page=0", 400, "page phải từ 1"),
        ("/?page=x", 400, "page phải là số nguyên"),
    ]:
        got, raw = await aget(url(monitor, path))
        page = raw.decode()
        assert got == status and words in page and '<html lang="vi">' in page, path


@needs_root
async def test_every_page_obeys_its_policy_and_has_live_parts(monitor: Monitor) -> None:
    for path in ("/", "/?q=tam+ky", "/sites/20335", "/sites/49"):
        got, raw = await aget(url(monitor, path))
        assert got == 200, path
        page = raw.decode()
        # (aget gives no headers: compute the policy the handler sends for this page)
        from bridgemon.web.security import html_policy

        assert_page_obeys_its_policy(page, html_policy(page, own_files=True), own_files=True)
        live_url = re.search(r'data-live-url="([^"]*)"', page)
        assert live_url and live_url.group(1), path
        got, raw = await aget(url(monitor, live_url.group(1).replace("&amp;", "&")))
        body = json.loads(raw)
        assert got == 200 and set(body) == {"updated", "parts", "version"}, path
        names = set(re.findall(r'data-live="(\w+)"', page))
        assert names and names <= set(body["parts"]), path


@needs_root
async def test_static_files_are_served_from_the_package(monitor: Monitor) -> None:
    got, raw = await aget(url(monitor, "/static/live.js"))
    assert got == 200 and b"data-live-url" in raw
    got, raw = await aget(url(monitor, "/static/pages.css"))
    assert got == 200 and b"@media (max-width: 700px)" in raw
    got, _ = await aget(url(monitor, "/static/nope.js"))
    assert got == 404
    got, _ = await aget(url(monitor, "/static/..%2Fpages.py"))
    assert got == 404


@needs_root
async def test_a_page_that_has_the_live_parts_gets_only_their_version(tmp_path: Path) -> None:
    # One round an hour, its sites started 8 minutes apart (spread): once the first site's
    # result is in, nothing changes on the page for minutes.
    path = write_inventory(tmp_path / "sites.toml", SITES, port=free_port(), levels=LEVELS,
                           interval="1h")
    running = Monitor(load_config(path))
    await running.start()
    try:
        async def judged() -> bool:
            _, raw = await aget(url(running, "/api/v1/sites"))
            return bool(json.loads(raw)["summary"]["unknown"] == len(SITES) - 1)

        await await_for(judged, 15, "the first site judged")
        _, raw = await aget(url(running, "/?live=1"))
        first = json.loads(raw)
        assert first["parts"] and first["version"]
        _, raw = await aget(url(running, f"/?live=1&seen={first['version']}"))
        again = json.loads(raw)
        assert again == {"updated": again["updated"], "same": True,
                         "version": first["version"]}
        _, raw = await aget(url(running, "/?live=1&seen=older"))
        assert json.loads(raw)["parts"] == first["parts"]
    finally:
        await running.stop()


@needs_root
async def test_since_survives_a_reload_of_the_running_daemon(monitor: Monitor) -> None:
    async def ready() -> bool:
        return all(view.verdict.state.value == "ready"
                   for view in monitor.snapshot().sites.values())

    await await_for(ready, 15, "every site ready")
    before = {site_id: view.since for site_id, view in monitor.snapshot().sites.items()}
    got, _ = await aget(url(monitor, "/api/v1/sites"))  # some time passes
    assert got == 200
    outcome = await monitor.reload()
    assert outcome.ok
    after = {site_id: view.since for site_id, view in monitor.snapshot().sites.items()}
    assert after == before
