"""The vantage: its name on every series, its shard, and its isolation — judged purely,
then live in the daemon on loopback (anchors cut and restored with local routes)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridgemon.board import Board
from bridgemon.config import load_config, parse_config
from bridgemon.daemon import Monitor
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.readiness import Reason, Verdict, judge_isolated
from bridgemon.shards import Shard, share
from bridgemon.vantage import Failures, count_failures, default_gateway, is_isolated
from bridgemon.vantage_view import clock_time
from bridgemon.verdicts import State
from bridgemon.windows import WindowStore
from tests.conftest import add_route, free_port, needs_root
from tests.helpers import (
    aget_json,
    ascrape,
    await_for,
    config_errors,
    inventory_toml,
    value,
    write_inventory,
)

SITES = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.61.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.61.2.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "127.61.2.10"},
    {"id": "503", "name": "Thị xã Điện Bàn", "level": "district", "parent": "49",
     "address": "127.61.3.1"},
    {"id": "20400", "name": "Xã Điện Hòa", "level": "commune", "parent": "503",
     "address": "198.19.254.112"},  # behind an unreachable route: it never answers
]
ANCHOR = "198.19.254.111"
SILENT = "198.19.254.112"


# -- judging (pure) ------------------------------------------------------------------------


def verdict(state: State, up: bool | None, *codes: str) -> Verdict:
    reasons = tuple(Reason(code, state, code, code) for code in codes)
    return Verdict("20335", state, reasons, up, None, 1_800_000_000.0)


def test_an_isolated_vantage_judges_failures_unknown_and_says_since_when() -> None:
    since = clock_time(datetime(2027, 1, 15, 1, 2, 30, tzinfo=UTC).timestamp())
    assert since == "08:02"  # as people in Vietnam read the clock, whatever the host's zone
    judged = judge_isolated(verdict(State.NOT_READY, False, "no_reply"), since)
    assert judged.state == State.UNKNOWN
    assert judged.reasons[0].code == "vantage_isolated"
    assert judged.reasons[0].en == "monitor's own link is down since 08:02"
    assert judged.reasons[0].vi == "đường truyền của máy giám sát bị mất từ 08:02"
    # what was measured is kept, no longer counted as the site's fault
    assert [(r.code, r.severity) for r in judged.reasons[1:]] == [("no_reply", State.UNKNOWN)]
    parent_down = judge_isolated(verdict(State.PARENT_DOWN, False, "parent_down", "no_reply"),
                                 since)
    assert parent_down.state == State.UNKNOWN
    assert [r.code for r in parent_down.reasons] == ["vantage_isolated", "no_reply"]


@pytest.mark.parametrize("state", [State.READY, State.DEGRADED, State.UNKNOWN])
def test_isolation_leaves_what_answered_alone(state: State) -> None:
    own = verdict(state, True, *(() if state == State.READY else ("rtt",)))
    assert judge_isolated(own, "08:02") is own


def test_not_isolated_changes_nothing() -> None:
    own = verdict(State.NOT_READY, False, "no_reply")
    assert judge_isolated(own, None) is own


@pytest.mark.parametrize(("anchors", "failures", "share", "isolated"), [
    ((False, False), Failures(0, 10, 0, 1), None, True),  # every anchor silent
    ((True, False), Failures(10, 10, 1, 1), None, False),  # one answers; no share set
    ((True, False), Failures(8, 10, 1, 1), 0.8, True),  # 80 % down, the top too
    ((True,), Failures(7, 10, 1, 1), 0.8, False),
    ((True,), Failures(9, 10, 0, 1), 0.8, False),  # the top answers: not the monitor
    ((), Failures(), 0.8, False),  # nothing probed yet
    ((), Failures(0, 10, 0, 1), None, False),  # no anchors, no share: never isolated
])
def test_the_isolation_decision(anchors: tuple[bool, ...], failures: Failures,
                                share: float | None, isolated: bool) -> None:
    assert is_isolated(anchors, failures, share) is isolated


# A province, two districts, ten communes under the first: its uplink is what fails.
TREE = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "127.0.0.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "127.0.0.2"},
    {"id": "504", "name": "Huyện Tây Giang", "level": "district", "parent": "49",
     "address": "127.0.0.3"},
    *({"id": f"2033{c}", "name": f"Xã {c}", "level": "commune", "parent": "502",
       "address": f"127.0.1.{c + 1}"} for c in range(10)),
]


def judged(down: set[str]) -> Board:
    """A board that judged one round of TREE, ``down`` answering nothing."""
    inventory = parse_config(inventory_toml(TREE, port=9470), Path("sites.toml")).inventory
    windows = WindowStore(window=3)
    windows.sync(inventory, 3)
    now = time.time()
    for site in inventory.sites.values():
        burst = EchoBurst(site.address, (None,) * 3 if site.id in down else (0.001,) * 3)
        result = ProbeResult("icmp", "icmp", site.address, burst.received > 0, now, 0.5,
                             None, burst)
        windows.record(site.id, site.probe_key(), SiteRound(now, (result,)))
    board = Board()
    board.sync(inventory, windows.sites, now)
    return board


def test_a_dead_district_is_not_the_monitors_link() -> None:
    district = {"502", *(f"2033{c}" for c in range(10))}  # 11 of 13 sites down
    board = judged(district)
    assert board.inventory is not None
    failures = count_failures(board.inventory, board.views)
    assert failures == Failures(failing=11, probed=13, top_failing=0, top_probed=1)
    assert not is_isolated((), failures, 0.8)
    everything = judged({site["id"] for site in TREE})
    assert everything.inventory is not None
    assert is_isolated((), count_failures(everything.inventory, everything.views), 0.8)


def test_the_board_keeps_the_counts_as_rounds_come_in() -> None:
    """The watch reads ``Board.failures`` instead of counting every view: it must stay what
    counting says as sites go down and come back, and after a reload."""
    inventory = parse_config(inventory_toml(TREE, port=9470), Path("sites.toml")).inventory
    windows = WindowStore(window=3)
    windows.sync(inventory, 3)
    board = Board()
    now = time.time()
    board.sync(inventory, windows.sites, now)
    assert board.failures == Failures()  # nothing probed yet

    def record(site_id: str, answers: bool, when: float) -> None:
        site = inventory.sites[site_id]
        burst = EchoBurst(site.address, (0.001 if answers else None,) * 3)
        result = ProbeResult("icmp", "icmp", site.address, answers, when, 0.5, None, burst)
        windows.record(site_id, site.probe_key(), SiteRound(when, (result,)))
        board.update(site_id, when)

    for step, (site_id, answers) in enumerate([
        ("20331", False), ("49", True), ("49", False), ("20331", True), ("20331", True),
        ("502", False), ("20332", False), ("49", True), ("502", True),
    ]):
        record(site_id, answers, now + step)
        assert board.failures == count_failures(inventory, board.views), step
    assert board.failures == Failures(failing=1, probed=4, top_failing=0, top_probed=1)
    smaller = parse_config(inventory_toml(TREE[:4], port=9470), Path("sites.toml")).inventory
    windows.sync(smaller, 3)
    board.sync(smaller, windows.sites, now + 10)
    assert board.failures == count_failures(smaller, board.views)
    assert board.failures == Failures(failing=0, probed=2, top_failing=0, top_probed=1)


def test_the_default_gateway_is_read_from_the_routing_table(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t0010A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")
    assert default_gateway(routes) == "192.168.0.1"
    routes.write_text("Iface\tDestination\tGateway\tFlags\n")
    assert default_gateway(routes) is None
    assert default_gateway(tmp_path / "missing") is None


# -- configuration ---------------------------------------------------------------------------


def test_vantage_settings_are_read_and_checked() -> None:
    text = inventory_toml(SITES[:1], port=9470, extra=(
        '\n[monitor.vantage]\nname = "Sở TT&TT Quảng Nam"\nanchors = ["127.0.0.1", "::1"]\n'
        "isolated_share = 0.8\n"))
    vantage = parse_config(text, Path("sites.toml")).monitor.vantage
    assert vantage.name == "Sở TT&TT Quảng Nam" and vantage.anchors == ("127.0.0.1", "::1")
    assert vantage.isolated_share == 0.8 and vantage.gateway is False
    default = parse_config(inventory_toml(SITES[:1], port=9470), Path("sites.toml"))
    assert default.monitor.vantage.name  # the host name


@pytest.mark.parametrize(("written", "words"), [
    ('name = ""', "non-empty"), ('name = " dc1"', "without spaces"),
    ('name = "a\\"b"', "quotes"), ('name = "a\\tb"', "printable"),
    (f'name = "{"x" * 65}"', "64"), ('anchors = ["224.0.0.1"]', "multicast"),
    ("isolated_share = 1.5", "less than or equal to 1"),
])
def test_bad_vantage_settings_name_their_line(written: str, words: str) -> None:
    text = inventory_toml(SITES[:1], port=9470, extra=f"\n[monitor.vantage]\n{written}\n")
    line = text.splitlines().index(written) + 1
    errors = config_errors(text)
    assert len(errors) == 1 and errors[0].startswith(f"sites.toml:{line}: monitor.vantage.")
    assert words in errors[0]


# -- live -------------------------------------------------------------------------------------


@pytest.fixture
def routes() -> Iterator[list[str]]:
    """The silent site behind an unreachable route (nothing leaves the host); the anchor
    too, until a test gives it an address on lo; both removed afterwards."""
    added: list[str] = []
    add_route(added, f"unreachable {SILENT}/32")
    add_route(added, f"unreachable {ANCHOR}/32")
    yield added
    subprocess.run(["ip", "addr", "del", f"{ANCHOR}/32", "dev", "lo"], check=False,
                   capture_output=True)
    for route in added:
        subprocess.run(["ip", "route", "del", *route.split()], check=False,
                       capture_output=True)


async def started(tmp_path: Path, extra: str, shard: Shard | None = None) -> Monitor:
    path = write_inventory(tmp_path / "sites.toml", SITES, port=free_port(), extra=extra)
    monitor = Monitor(load_config(path), shard=shard)
    await monitor.start()
    return monitor


def base(monitor: Monitor) -> str:
    assert monitor.bound is not None
    return f"http://{monitor.bound[0]}:{monitor.bound[1]}"


@pytest.fixture
async def isolated_monitor(tmp_path: Path, routes: list[str]) -> AsyncIterator[Monitor]:
    monitor = await started(tmp_path, f'\n[monitor.vantage]\nname = "Quảng Nam DC"\n'
                                      f'anchors = ["{ANCHOR}"]\n')
    yield monitor
    await monitor.stop()


@needs_root
async def test_every_series_carries_the_vantage(tmp_path: Path, routes: list[str]) -> None:
    monitor = await started(tmp_path, '\n[monitor.vantage]\nname = "Sở TT&TT Quảng Nam"\n')
    try:
        async def probed() -> bool:
            samples = await ascrape(base(monitor) + "/metrics")
            return len(samples.get("bridgemon_site_up", [])) == len(SITES)

        await await_for(probed, 15, "every site probed")
        samples = await ascrape(base(monitor) + "/metrics")
        names = {labels.get("vantage") for series in samples.values() for labels, _ in series}
        assert names == {"Sở TT&TT Quảng Nam"}, names
        assert value(samples, "bridgemon_vantage_info", shard="1/1") == 1
        assert value(samples, "bridgemon_vantage_up") == 1
        assert "bridgemon_vantage_isolated_since_timestamp_seconds" not in samples
    finally:
        await monitor.stop()


@needs_root
async def test_a_shard_exports_its_subtrees_and_probes_the_root(tmp_path: Path,
                                                                routes: list[str]) -> None:
    seen: dict[str, str] = {}
    for n in (1, 2, 3):
        monitor = await started(tmp_path, '\n[monitor.vantage]\nname = "dc1"\n', Shard(n, 3))
        try:
            probed = set(monitor.share.inventory.sites)
            assert "49" in probed  # every shard probes the root
            samples = await ascrape(base(monitor) + "/metrics")
            assert value(samples, "bridgemon_vantage_info", shard=f"{n}/3") == 1
            for labels, _ in samples.get("bridgemon_site_info", []):  # a share may be empty
                assert labels["site"] not in seen
                seen[labels["site"]] = str(n)
        finally:
            await monitor.stop()
    assert sorted(seen) == sorted(site["id"] for site in SITES)
    assert seen["20335"] == seen["502"] and seen["20400"] == seen["503"]


@needs_root
async def test_isolation_turns_failures_unknown_and_recovers(
        isolated_monitor: Monitor) -> None:
    url = base(isolated_monitor)

    async def site(site_id: str) -> dict[str, object]:
        body = await aget_json(f"{url}/api/v1/sites/{site_id}")
        assert isinstance(body, dict)
        return body

    async def isolated() -> bool:
        samples = await ascrape(url + "/metrics")
        return value(samples, "bridgemon_vantage_up") == 0

    await await_for(isolated, 15, "the vantage found cut off")
    samples = await ascrape(url + "/metrics")
    assert value(samples, "bridgemon_vantage_anchor_up", anchor=ANCHOR) == 0
    since = value(samples, "bridgemon_vantage_isolated_since_timestamp_seconds")
    assert time.time() - 20 < since <= time.time()

    async def silent_is_unknown() -> bool:
        body = await site("20400")
        return body["verdict"] == "unknown" and "no_reply" in body["problems"]  # probed

    await await_for(silent_is_unknown, 15, "the silent site judged unknown")
    body = await site("20400")
    assert body["problems"] == ["vantage_isolated", "no_reply"]
    reasons, reasons_vi = body["reasons"], body["reasons_vi"]
    assert isinstance(reasons, list) and isinstance(reasons_vi, list)
    assert reasons[0].startswith("monitor's own link is down since ")
    assert reasons_vi[0].startswith("đường truyền của máy giám sát bị mất từ ")
    assert (await site("20335"))["verdict"] == "ready"  # what answers stays ready

    # The link comes back: the anchor answers (an address on lo), verdicts recover alone.
    subprocess.run(["ip", "addr", "add", f"{ANCHOR}/32", "dev", "lo"], check=True)

    async def not_isolated() -> bool:
        return (await site("20400"))["verdict"] == "not_ready"

    await await_for(not_isolated, 15, "the silent site judged not_ready again")
    samples = await ascrape(url + "/metrics")
    assert value(samples, "bridgemon_vantage_up") == 1
    assert value(samples, "bridgemon_vantage_anchor_up", anchor=ANCHOR) == 1
    assert "bridgemon_vantage_isolated_since_timestamp_seconds" not in samples



@needs_root
async def test_run_shard_outlives_a_reload_and_the_file_shard_follows_it(
        tmp_path: Path, routes: list[str]) -> None:
    overridden = await started(tmp_path, '\n[monitor.vantage]\nname = "dc1"\n', Shard(2, 3))
    try:
        path = overridden.config.path
        path.write_text(path.read_text(encoding="utf-8").replace(
            "window = 3\n", 'window = 3\nshard = "1/2"\n', 1), encoding="utf-8")
        outcome = await overridden.reload()
        assert outcome.ok, outcome
        assert overridden.config.monitor.shard == Shard(1, 2)  # the file says 1/2...
        assert overridden.share.shard == Shard(2, 3)  # ... `run --shard 2/3` wins
        samples = await ascrape(base(overridden) + "/metrics")
        assert value(samples, "bridgemon_vantage_info", shard="2/3") == 1
    finally:
        await overridden.stop()
    config = load_config(path)
    part = share(config.inventory, config.monitor.shard)
    assert part.shard == Shard(1, 2)
    assert set(part.order) == part.exported and "49" in part.inventory.sites
