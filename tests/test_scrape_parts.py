"""``/metrics?part=N/M``: M disjoint parts whose union is the whole exposition."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridgemon.cooperative import drain
from bridgemon.daemon import Monitor
from bridgemon.shards import Shard
from bridgemon.web.scrape_parts import BadPart, parse_part, sites_steps
from tests.conftest import REPO, free_port, needs_root
from tests.helpers import (
    PROMETHEUS,
    aget,
    aget_json,
    await_for,
    running_monitor,
    running_prometheus,
    wait_for_sync,
    write_inventory,
)


@pytest.mark.parametrize("text, message", [
    ("0/3", "N must be between 1 and 3"),
    ("4/3", "N must be between 1 and 3"),
    ("1/17", "M must be between 1 and 16"),
    ("1/0", "M must be between 1 and 16"),
    ("two/3", "part must be N/M"),
    ("3", "part must be N/M"),
])
def test_a_bad_part_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(BadPart, match=message):
        parse_part(text)


def test_parts_split_the_sites_once_each_in_order_and_stay_put() -> None:
    order = tuple(f"2{n:04d}" for n in range(3000))
    parts = [drain(sites_steps(order, Shard(index, 4))) for index in range(1, 5)]
    assert sorted(site for part in parts for site in part) == sorted(order)
    assert all(list(part) == sorted(part, key=order.index) for part in parts)
    assert all(600 <= len(part) <= 900 for part in parts)  # about a quarter each
    again = [drain(sites_steps(tuple(order), Shard(index, 4))) for index in range(1, 5)]
    assert again == parts  # a new order with the same sites: the same parts
    five = [set(drain(sites_steps(order, Shard(index, 5)))) for index in range(1, 6)]
    moved = sum(len(set(part) - five[index]) for index, part in enumerate(parts))
    assert moved <= 3000 * 0.3  # one part more moves about a fifth, not everything
    assert drain(sites_steps(order, Shard(1, 1))) is order


SITES = [{"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province",
          "address": "127.61.0.1"}] + [
    {"id": f"{500 + n}", "name": f"Huyện số {n}", "level": "district", "parent": "49",
     "address": f"127.61.1.{n + 1}"} for n in range(30)]


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Monitor]:
    async with running_monitor(write_inventory(tmp_path / "sites.toml", SITES,
                                               port=free_port())) as running:
        yield running


def site_lines(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines()
            if line.startswith("bridgemon_") and 'site="' in line
            and not line.startswith(("bridgemon_event", "bridgemon_testrun"))}


@needs_root
async def test_the_parts_of_a_scrape_are_the_whole_scrape(monitor: Monitor) -> None:
    assert monitor.bound is not None
    url = f"http://{monitor.bound[0]}:{monitor.bound[1]}/metrics"

    async def ready() -> bool:
        summary = (await aget_json(url.replace("/metrics", "/api/v1/sites")))["summary"]
        return bool(summary["ready"] == len(SITES))

    await await_for(ready, 20, "every site ready")
    whole = (await aget(url))[1].decode()
    parts = [(await aget(f"{url}?part={index}/3"))[1].decode() for index in (1, 2, 3)]
    lines = [site_lines(part) for part in parts]
    assert all(lines) and sum(map(len, lines)) == len(set().union(*lines))  # disjoint
    # The same series as the whole (values may have moved between the two requests).
    assert set().union(*lines) == site_lines(whole)
    assert "bridgemon_build_info{" in parts[0]
    assert all("bridgemon_build_info" not in part for part in parts[1:])
    for part in parts:  # every part is a complete exposition: each family's header
        assert "# TYPE bridgemon_site_state gauge" in part
    status, body = await aget(f"{url}?part=4/3")
    assert status == 400 and b'"field": "part"' in body


@pytest.mark.skipif(PROMETHEUS is None,
                    reason="prometheus not installed (Debian package; .ci/run installs it)")
@needs_root
def test_prometheus_scraping_the_shipped_parts_sees_what_one_target_gives(
        tmp_path: Path) -> None:
    """deploy/prometheus/scrape-parts.yml against the daemon: one up per part, and the
    site series exactly as a single target has them (no part label, each site once)."""
    assert PROMETHEUS is not None
    port = free_port()
    inventory = write_inventory(tmp_path / "sites.toml", SITES, port=port)
    daemon = subprocess.Popen([sys.executable, "-m", "bridgemon", "-c", str(inventory), "run"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    config = yaml.safe_load((REPO / "deploy/prometheus/scrape-parts.yml").read_text("utf-8"))
    job = config["scrape_configs"][0]
    job["scrape_interval"] = job["scrape_timeout"] = "1s"
    for group in job["static_configs"]:
        group["targets"] = [f"127.0.0.1:{port}"]
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    try:
        with running_prometheus(prom_dir, config) as prom_url:

            def query(expr: str) -> list[dict[str, Any]]:
                url = f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        return json.load(response)["data"]["result"]  # type: ignore[no-any-return]
                except OSError:
                    return []

            def count(expr: str) -> float:
                result = query(f"count({expr})")
                return float(result[0]["value"][1]) if result else 0.0

            wait_for_sync(lambda: count('bridgemon_site_ready{job="bridgemon"} == 1')
                          == len(SITES), 60, "every site ready, seen by Prometheus")
            assert count('up{job="bridgemon"} == 1') == 6
            assert {r["metric"]["part"] for r in query('up{job="bridgemon"}')} == \
                {f"{n}/6" for n in range(1, 7)}
            assert count('bridgemon_site_state{job="bridgemon"}') == 5 * len(SITES)
            assert count('count by (site) (bridgemon_site_state{job="bridgemon"})') \
                == len(SITES)
            # Dropped from every sample; only the targets' own series (up, scrape_*) keep it.
            assert count('{__name__=~"bridgemon_.+", job="bridgemon", part!=""}') == 0
            assert count('{__name__=~"bridgemon_.+", job="bridgemon"}') > 15 * len(SITES)
            assert count('bridgemon_build_info{job="bridgemon"}') == 1  # part 1 only
    finally:
        daemon.terminate()
        daemon.communicate(timeout=20)
