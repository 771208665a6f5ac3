"""STAMP trains and path MTU in the exposition: a round-enabled stamp or mtu check's
figures per site (and direction), and the latest test run's per event; only for sites
that have such checks, in base units."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridgemon import metrics
from bridgemon.board import Board
from bridgemon.config import parse_config
from bridgemon.events import Event
from bridgemon.metrics import SITE_FAMILIES, render
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger
from bridgemon.probes.result import SiteRound
from bridgemon.probes.site import probe_site
from bridgemon.snapshot import PingerFigures, ReloadFigures, RoundFigures, Snapshot
from bridgemon.stamp import Reflector
from bridgemon.stamp.check import train_check
from bridgemon.stamp.pmtu import PmtuResult
from bridgemon.stamp.pmtu_check import mtu_check
from bridgemon.stamp.verdict import judge
from bridgemon.windows import WindowStore
from tests.helpers import inventory_toml, one_check_inventory, parse_exposition, value
from tests.stamp_report_samples import path_report
from tests.test_metrics import NOW, SITES, icmp
from tests.test_stamp_analysis import result_of, simulate

# The names this file expects (before they existed, every test here failed on them).
PATH_NAMES = {"bridgemon_stamp_loss_ratio", "bridgemon_stamp_jitter_seconds",
              "bridgemon_stamp_delay_seconds", "bridgemon_stamp_rate_bits_per_second",
              "bridgemon_stamp_mos", "bridgemon_path_mtu_bytes"}


def snapshot(sites: list[dict[str, Any]], rounds: dict[str, SiteRound]) -> Snapshot:
    """tests.test_metrics's, at a 30 s interval: an mtu check in the rounds takes 15 s."""
    inventory = parse_config(
        inventory_toml(sites, port=9, interval="30s", levels=["province", "commune"]),
        Path("t.toml"),
    ).inventory
    state = WindowStore(window=5)
    state.sync(inventory, 5)
    for site_id, site_round in rounds.items():
        state.record(site_id, inventory.sites[site_id].probe_key(), site_round)
    board = Board()
    board.sync(inventory, state.sites, NOW)
    return Snapshot(
        taken_at=NOW, started_at=NOW - 60, inventory=inventory, sites=dict(board.views),
        order=inventory.order, rounds=(RoundFigures(2.0, len(sites), 7, 1, NOW - 1, 0.8),),
        pinger=PingerFigures(21, 20, 2, {"ipv4": "raw"}),
        reload=ReloadFigures(True, NOW - 60, NOW - 60, ()),
    )

WITH_PATH_CHECKS = [
    {**SITES[0], "checks": {"video": {"type": "stamp", "rounds": True, "duration": "1s",
                                      "wait": "1s"},
                            "mtu": {"type": "mtu", "rounds": True}}},
    *SITES[1:],
]


def uplink_loss_round() -> SiteRound:
    """What a round with a 2 Mbit/s train losing 11.7 % on the uplink and a 1400-octet
    path MTU (a router said so) gives: the probes' own results, judged as they judge."""
    train = result_of(simulate(up_lost=range(10, 200, 8)))
    mtu = PmtuResult(address="127.0.0.1", size=1472, outcome="frag_needed", mtu=1400,
                     largest_ok=None, smallest_lost=None, reporter="127.0.0.9", rtt=None,
                     mode="raw", probes=2)
    return SiteRound(NOW, (
        icmp("127.0.0.1", (0.010, 0.012, 0.011)),
        dataclasses.replace(train_check(train, judge(train), name="video"), started_at=NOW),
        mtu_check(mtu, name="mtu", started_at=NOW, duration=0.3),
    ))


def test_a_round_trains_and_mtu_figures_are_exported_per_direction() -> None:
    snap = snapshot(WITH_PATH_CHECKS, {"48": uplink_loss_round(),
                                       "20257": SiteRound(NOW, (icmp("127.0.0.3", (0.02,)),))})
    text = render(snap).decode()
    samples = parse_exposition(text)
    labels = {"site": "48", "check": "video"}
    assert value(samples, "bridgemon_stamp_loss_ratio", **labels, direction="downlink") == 0
    assert value(samples, "bridgemon_stamp_loss_ratio", **labels, direction="uplink") == \
        pytest.approx(24 / 205, abs=1e-6)
    assert value(samples, "bridgemon_stamp_jitter_seconds", **labels, direction="uplink") \
        == 0
    assert value(samples, "bridgemon_stamp_delay_seconds", **labels, stat="p95") == \
        pytest.approx(0.010)
    assert value(samples, "bridgemon_stamp_rate_bits_per_second", **labels,
                 direction="uplink") == pytest.approx(1_763_547, rel=1e-6)
    assert 1 <= value(samples, "bridgemon_stamp_mos", **labels) < 1.1
    assert value(samples, "bridgemon_path_mtu_bytes", site="48", check="mtu") == 1400
    # Only the site with such checks has such series.
    for name in PATH_NAMES:
        assert {s["site"] for s, _ in samples.get(name, [])} <= {"48"}, name
    # Valid exposition: every family parses, with its HELP and TYPE.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in PATH_NAMES:
        assert families[name].type == "gauge" and families[name].documentation


def test_the_path_families_are_site_families() -> None:
    path_families = metrics.PATH_FAMILIES
    assert {name for name, _, _ in path_families} == PATH_NAMES
    names = [name for name, _, _ in SITE_FAMILIES]
    assert names[-len(path_families):] == [name for name, _, _ in path_families]
    for name, kind, _ in path_families:
        # base units in the name (house naming: docs/monitoring.md, metrics.py)
        assert kind == "gauge" and name.startswith("bridgemon_")
        assert name.endswith(("_ratio", "_seconds", "_bits_per_second", "_mos", "_bytes"))


def test_no_series_without_path_checks() -> None:
    text = render(snapshot(SITES, {"48": SiteRound(NOW, (icmp("127.0.0.1", (0.01,)),))}))
    samples = parse_exposition(text.decode())
    assert not any(samples.get(name) for name in PATH_NAMES)
    assert not any(name.startswith("bridgemon_testrun_stamp") for name in samples)


def test_a_passed_mtu_check_exports_the_size_it_tested() -> None:
    ok = PmtuResult(address="127.0.0.1", size=1472, outcome="ok", mtu=None, largest_ok=None,
                    smallest_lost=None, reporter=None, rtt=0.001, mode="raw", probes=1)
    silent = dataclasses.replace(ok, outcome="no_reply", rtt=None)
    for result, expected in ((ok, [1500.0]), (silent, [])):
        site_round = SiteRound(NOW, (icmp("127.0.0.1", (0.01,)),
                                     mtu_check(result, name="mtu", started_at=NOW,
                                               duration=0.1)))
        samples = parse_exposition(render(snapshot(WITH_PATH_CHECKS,
                                                   {"48": site_round})).decode())
        assert [v for _, v in samples.get("bridgemon_path_mtu_bytes", [])] == expected


def test_the_latest_test_runs_trains_are_exported_per_event() -> None:
    report = path_report()
    ids = [site["id"] for site in report["sites"]]
    snap = snapshot(SITES, {})
    # The sample run's sites as this inventory's: 48 stands for the first (a clean train,
    # MTU passed), 20242 for Tam Kỳ (11.7 % lost on the uplink, MTU 1400).
    report["sites"][0]["id"], report["sites"][1]["id"] = "48", "20242"
    event = Event(id="hn-1", title="Hội nghị", start=datetime.fromtimestamp(NOW + 3600, UTC),
                  end=datetime.fromtimestamp(NOW + 7200, UTC), selector="all",
                  participants=("48", "20242"), pretests=())
    snap = dataclasses.replace(snap, events=(event,), latest_runs={"hn-1": report})
    samples = parse_exposition(render(snap).decode())
    assert value(samples, "bridgemon_testrun_stamp_loss_ratio", event="hn-1", site="20242",
                 check="video", direction="uplink") == pytest.approx(0.117073, abs=1e-6)
    assert value(samples, "bridgemon_testrun_path_mtu_bytes", event="hn-1", site="20242",
                 check="mtu") == 1400
    assert value(samples, "bridgemon_testrun_path_mtu_bytes", event="hn-1", site="48",
                 check="mtu") == 1500
    assert value(samples, "bridgemon_testrun_stamp_delay_seconds", event="hn-1", site="48",
                 check="video", stat="max") == pytest.approx(0.010)
    # Sites of the run not in this inventory are left out, as in bridgemon_testrun_site_ready.
    exported = {s["site"] for s, _ in samples["bridgemon_testrun_stamp_loss_ratio"]}
    assert exported == {"48", "20242"} and set(ids) - {"48", "20242"}


def test_a_real_round_with_a_train_to_a_loopback_reflector() -> None:
    async def main() -> SiteRound:
        async with Reflector([("127.0.0.1", 0)]) as reflector:
            port = reflector.addresses[0][1]
            text = one_check_inventory(
                "video", f'type = "stamp"\nport = {port}\nrate = "1M"\nsize = 200\n'
                         'duration = "500ms"\nwait = "500ms"\nrounds = true\n')
            site = parse_config(text, Path("sites.toml")).inventory.sites["a"]
            ctx = ProbeContext(pinger=Pinger("auto"))
            try:
                return await probe_site(site, ctx)
            finally:
                ctx.pinger.close()

    site_round = asyncio.run(main())
    train = site_round.result("video")
    assert train is not None and train.ok
    sites: list[dict[str, Any]] = [{**SITES[0], "checks": {"video": {
        "type": "stamp", "rounds": True, "duration": "1s", "wait": "1s"}}}]
    samples = parse_exposition(render(snapshot(sites, {"48": site_round})).decode())
    labels = {"site": "48", "check": "video"}
    for direction in ("downlink", "uplink"):
        assert value(samples, "bridgemon_stamp_loss_ratio", **labels,
                     direction=direction) == 0
        assert value(samples, "bridgemon_stamp_rate_bits_per_second", **labels,
                     direction=direction) > 500_000
    delays = {s["stat"]: v for s, v in samples["bridgemon_stamp_delay_seconds"]}
    assert set(delays) == {"min", "avg", "p95", "max"}
    assert 0 < delays["min"] <= delays["avg"] <= delays["max"] < 0.5
    assert delays["min"] <= delays["p95"] <= delays["max"]
    assert value(samples, "bridgemon_stamp_mos", **labels) > 3.5
