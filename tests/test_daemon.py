"""The monitor in-process on loopback: verdicts, /metrics, the API, reloads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridgemon.config import load_config
from bridgemon.daemon import Monitor
from tests.conftest import free_port, needs_root
from tests.helpers import (
    aget,
    aget_json,
    apost,
    ascrape,
    await_for,
    running_monitor,
    value,
    write_inventory,
)

pytestmark = needs_root

SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.60.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.60.2.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.60.2.10", "labels": {"gso": "20335"}},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": "502",
     "address": "::1"},
]


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Monitor]:
    async with running_monitor(write_inventory(tmp_path / "sites.toml", SITES,
                                               port=free_port())) as running:
        yield running


def base(monitor: Monitor) -> str:
    assert monitor.bound is not None
    return f"http://{monitor.bound[0]}:{monitor.bound[1]}"


async def all_ready(monitor: Monitor, count: int) -> None:
    async def ready() -> bool:
        summary = (await aget_json(base(monitor) + "/api/v1/sites"))["summary"]
        return bool(summary["ready"] == count)

    await await_for(ready, 15, f"{count} sites ready")


async def test_sites_become_ready_and_are_exported(monitor: Monitor) -> None:
    await all_ready(monitor, 4)
    samples = await ascrape(base(monitor) + "/metrics")

    info = {labels["site"]: labels for labels, _ in samples["bridgemon_site_info"]}
    assert info["20335"]["name"] == "Phường Tân Thạnh"
    assert info["20335"]["parent"] == "502" and info["20335"]["level"] == "commune"
    assert info["20335"]["gso"] == "20335" and info["49"]["parent"] == ""
    for site in ("49", "502", "20335", "20338"):
        states = [v for labels, v in samples["bridgemon_site_state"] if labels["site"] == site]
        assert sorted(states) == [0, 0, 0, 0, 1]
        assert value(samples, "bridgemon_site_state", site=site, state="ready") == 1
        assert value(samples, "bridgemon_site_up", site=site) == 1
        assert value(samples, "bridgemon_site_ready", site=site) == 1
        assert value(samples, "bridgemon_icmp_loss_ratio", site=site) == 0
        assert 0 < value(samples, "bridgemon_icmp_rtt_seconds", site=site, stat="avg") < 0.01
        assert value(samples, "bridgemon_icmp_jitter_seconds", site=site) < 0.01
        assert 4.3 < value(samples, "bridgemon_site_mos", site=site) < 4.5
        assert time.time() - value(samples, "bridgemon_last_probe_timestamp_seconds",
                                   site=site) < 5
        assert value(samples, "bridgemon_icmp_echoes_sent_total", site=site) >= 3
    assert value(samples, "bridgemon_config_last_reload_successful") == 1
    assert value(samples, "bridgemon_round_sites", interval="2s") == 4
    assert value(samples, "bridgemon_pinger_echoes_sent_total") >= 12
    assert value(samples, "bridgemon_pinger_socket_info", family="ipv4", mode="raw") == 1
    assert samples["bridgemon_build_info"][0][0]["version"]


async def test_api_selects_and_rejects(monitor: Monitor) -> None:
    await all_ready(monitor, 4)
    url = base(monitor)
    body = await aget_json(url + "/api/v1/sites?select=under:502")
    assert [site["id"] for site in body["sites"]] == ["502", "20335", "20338"]
    assert body["summary"]["total"] == 3
    site = await aget_json(url + "/api/v1/sites/20335")
    assert site["verdict"] == "ready" and site["name"] == "Phường Tân Thạnh"
    assert site["checks"][0]["type"] == "icmp" and site["checks"][0]["received"] == 3
    assert set(site["window"]["rtt_ms"]) == {"min", "avg", "max", "p95"}
    status, raw = await aget(url + "/api/v1/sites?select=under:999")
    assert status == 400 and b"999" in raw
    status, _ = await aget(url + "/api/v1/sites/999")
    assert status == 404
    status, raw = await aget(url + "/healthz")
    assert status == 200 and b'"ok"' in raw


async def test_reload_applies_a_new_inventory_and_keeps_unchanged_windows(
    monitor: Monitor,
) -> None:
    await all_ready(monitor, 4)
    url = base(monitor)
    before = await ascrape(url + "/metrics")
    sent_before = value(before, "bridgemon_icmp_echoes_sent_total", site="502")
    changed = [*SITES[:3], {"id": "20341", "name": "Phường An Mỹ", "level": "commune",
                            "parent": "502", "address": "127.60.2.11"}]
    write_inventory(monitor.config.path, changed, port=monitor.config.monitor.listen[1])
    status, body = await apost(url + "/-/reload")
    assert status == 200 and body["ok"] and body["sites"] == 4
    after = await ascrape(url + "/metrics")
    sites = {labels["site"] for labels, _ in after["bridgemon_site_info"]}
    assert sites == {"49", "502", "20335", "20341"}
    assert not [lb for lb, _ in after["bridgemon_site_state"] if lb["site"] == "20338"]
    # the unchanged site kept its window and counters
    assert value(after, "bridgemon_icmp_echoes_sent_total", site="502") >= sent_before
    assert value(after, "bridgemon_site_state", site="502", state="ready") == 1
    await all_ready(monitor, 4)


async def test_bad_reload_keeps_the_running_inventory(monitor: Monitor) -> None:
    await all_ready(monitor, 4)
    url = base(monitor)
    path = monitor.config.path
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace('address = "127.60.2.10"', 'address = "127.60.2.300"')
                    .replace('parent = "49"', 'parent = "4999"'), encoding="utf-8")
    status, body = await apost(url + "/-/reload")
    assert status == 400 and not body["ok"]
    assert any(f"{path}:" in error and "127.60.2.300" in error for error in body["errors"])
    assert any("4999" in error for error in body["errors"])
    samples = await ascrape(url + "/metrics")
    assert value(samples, "bridgemon_config_last_reload_successful") == 0
    assert len(samples["bridgemon_site_info"]) == 4
    last = value(samples, "bridgemon_last_probe_timestamp_seconds", site="20335")

    async def probed_again() -> bool:
        now = await ascrape(url + "/metrics")
        return value(now, "bridgemon_last_probe_timestamp_seconds", site="20335") > last

    await await_for(probed_again, 10, "the old inventory to keep being probed")
    path.write_text(good, encoding="utf-8")
    status, body = await apost(url + "/-/reload")
    assert status == 200
    assert value(await ascrape(url + "/metrics"), "bridgemon_config_last_reload_successful") == 1


async def test_status_page_shows_counts_and_problems_in_vietnamese(tmp_path: Path) -> None:
    sites = [*SITES, {"id": "20341", "name": "Phường <script>alert(1)</script>",
                      "level": "commune", "parent": "502", "address": "127.60.2.12"}]
    path = write_inventory(tmp_path / "sites.toml", sites, port=free_port(),
                           extra='\n[profiles.default.thresholds]\nrtt_good = "0.001ms"\n'
                                 'rtt_bad = "0.002ms"\n')
    running = Monitor(load_config(path))
    await running.start()
    try:
        await await_for(
            lambda: _judged(running, 5), 15, "every site judged"
        )
        status, body = await aget(base(running) + "/")
    finally:
        await running.stop()
    page = body.decode()
    assert status == 200 and "Tình trạng các điểm cầu" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    # RTT thresholds of microseconds: every site is "not ready" with the reason in Vietnamese
    assert "Điểm cầu cần xử lý (5)" in page and "độ trễ" in page
    assert "Chưa sẵn sàng" in page


async def _judged(monitor: Monitor, count: int) -> bool:
    summary = (await aget_json(base(monitor) + "/api/v1/sites"))["summary"]
    return bool(summary["unknown"] == 0 and summary["total"] == count)


async def test_api_filters_and_pages_before_it_builds(monitor: Monitor) -> None:
    await all_ready(monitor, 4)
    url = base(monitor)
    body = await aget_json(url + "/api/v1/sites?limit=2")
    assert [site["id"] for site in body["sites"]] == ["49", "502"]
    assert body["matched"] == 4 and body["summary"]["total"] == 4  # the summary: all matched
    body = await aget_json(url + "/api/v1/sites?offset=2&limit=5")
    assert [site["id"] for site in body["sites"]] == ["20335", "20338"]
    body = await aget_json(url + "/api/v1/sites?select=under:502&verdict=ready&offset=1")
    assert [site["id"] for site in body["sites"]] == ["20335", "20338"]
    assert body["matched"] == 3
    body = await aget_json(url + "/api/v1/sites?verdict=not_ready")
    assert body["sites"] == [] and body["matched"] == 0
    # every row is the same object whichever way it is asked for
    one = await aget_json(url + "/api/v1/sites/20338")
    listed = (await aget_json(url + "/api/v1/sites?select=20338"))["sites"][0]
    assert one.keys() == listed.keys() and one["name"] == "Phường Phước Hòa"
    for query in ("limit=-1", "limit=x", "offset=-3"):
        status, raw = await aget(url + "/api/v1/sites?" + query)
        assert status == 400 and query.split("=")[0].encode() in raw


async def test_status_page_filters_and_pages(monitor: Monitor) -> None:
    await all_ready(monitor, 4)
    url = base(monitor)
    status, raw = await aget(url + "/?q=phuoc%20hoa")  # without diacritics
    page = raw.decode()
    assert status == 200 and "Phường Phước Hòa" in page and "Phường Tân Thạnh" not in page
    assert "Tất cả điểm cầu (1 / 4)" in page
    status, raw = await aget(url + "/?verdict=ready&page=9")  # past the end: the last page
    assert status == 200 and "Phường Tân Thạnh" in raw.decode()
    status, _ = await aget(url + "/?verdict=nonsense")
    assert status == 400


async def test_metrics_are_gzipped_when_asked_and_say_how_late_the_loop_runs(
    monitor: Monitor,
) -> None:
    import gzip

    import aiohttp

    await all_ready(monitor, 4)
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(base(monitor) + "/metrics", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        raw = await response.read()
        encoding = response.headers.get("Content-Encoding")
    # A small exposition is not worth compressing; the daemon sends it as it is.
    text = gzip.decompress(raw).decode() if encoding == "gzip" else raw.decode()
    vantage = f'{{vantage="{monitor.config.monitor.vantage.name}"}}'
    assert f"bridgemon_event_loop_lag_seconds{vantage} " in text
    assert f"bridgemon_pinger_receive_drops_total{vantage} 0.0" in text
    assert f"bridgemon_pinger_kernel_filter{vantage} 1.0" in text
