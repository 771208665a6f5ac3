"""The exposition of one snapshot: names, labels, one-hot states, checks, vanishing sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgemon.board import Board
from bridgemon.config import parse_config
from bridgemon.metrics import render
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.snapshot import PingerFigures, ReloadFigures, RoundFigures, Snapshot
from bridgemon.windows import WindowStore
from tests.helpers import inventory_toml, parse_exposition, patches_hot_modules, value

NOW = 1_800_000_000.0

SITES = [
    {"id": "48", "name": "UBND thành phố Đà Nẵng", "level": "province", "address": "127.0.0.1",
     "contact": {"name": "Trần Thị Bích", "phone": "0236 3822 000"}},
    {"id": "20242", "name": "Phường Hải Châu", "level": "commune", "parent": "48",
     "address": "127.0.0.2", "labels": {"gso": "20242"},
     "checks": {"sip": {"type": "sip"}, "web": {"type": "https", "required": False}}},
    {"id": "20257", "name": "Phường Hòa Cường", "level": "commune", "parent": "48",
     "address": "127.0.0.3"},
]


def snapshot(sites: list[dict[str, object]], rounds: dict[str, SiteRound]) -> Snapshot:
    config = parse_config(
        inventory_toml(sites, port=9, interval="10s", levels=["province", "commune"]),
        Path("t.toml"),
    )
    inventory = config.inventory
    state = WindowStore(window=5)
    state.sync(inventory, 5)
    for site_id, site_round in rounds.items():
        if site_id in inventory.sites:
            state.record(site_id, inventory.sites[site_id].probe_key(), site_round)
    board = Board()
    board.sync(inventory, state.sites, NOW)
    return Snapshot(
        taken_at=NOW, started_at=NOW - 60, inventory=inventory,
        sites=dict(board.views), order=inventory.order,
        rounds=(RoundFigures(2.0, len(sites), 7, 1, NOW - 1, 0.8),),
        pinger=PingerFigures(21, 20, 2, {"ipv4": "raw"}),
        reload=ReloadFigures(True, NOW - 60, NOW - 60, ()),
    )


def icmp(address: str, rtts: tuple[float | None, ...]) -> ProbeResult:
    burst = EchoBurst(address, rtts)
    return ProbeResult("icmp", "icmp", address, burst.received > 0, NOW, 0.5, None, burst)


def test_sites_states_and_figures_are_exported() -> None:
    rounds = {
        "48": SiteRound(NOW, (icmp("127.0.0.1", (0.010, 0.012, 0.011)),)),
        "20242": SiteRound(NOW, (
            icmp("127.0.0.2", (0.020, None, 0.024)),
            ProbeResult("sip", "sip", "127.0.0.2", True, NOW, 0.03, None,
                        details={"status_code": 200, "transport": "udp"}),
            ProbeResult("web", "https", "127.0.0.2", True, NOW, 0.2,
                        "HTTPS 443: certificate expires in 3 days",
                        details={"cert_not_after": NOW + 3 * 86400}),
        )),
    }
    samples = parse_exposition(render(snapshot(SITES, rounds)).decode())
    info = {labels["site"]: labels for labels, _ in samples["bridgemon_site_info"]}
    assert info["48"]["contact"] == "Trần Thị Bích" and info["48"]["phone"] == "0236 3822 000"
    assert info["20242"]["gso"] == "20242" and info["20257"]["gso"] == ""
    assert info["20242"]["name"] == "Phường Hải Châu" and info["20242"]["parent"] == "48"

    assert value(samples, "bridgemon_site_state", site="48", state="ready") == 1
    assert value(samples, "bridgemon_site_state", site="20242", state="not_ready") == 1  # 33 % loss
    assert value(samples, "bridgemon_site_state", site="20257", state="unknown") == 1
    assert value(samples, "bridgemon_site_ready", site="20242") == 0
    assert value(samples, "bridgemon_icmp_loss_ratio", site="20242") == 1 / 3
    assert value(samples, "bridgemon_icmp_rtt_seconds", site="48", stat="max") == 0.012
    assert abs(value(samples, "bridgemon_icmp_jitter_seconds", site="48") - 0.0015) < 1e-12
    assert value(samples, "bridgemon_site_problem", site="20242", problem="loss",
                 severity="not_ready") == 1
    assert value(samples, "bridgemon_site_problem", site="20242", problem="check:web",
                 severity="degraded") == 1
    # a never-probed site has state and info, but no figures
    assert not [lb for lb, _ in samples["bridgemon_site_up"] if lb["site"] == "20257"]

    assert value(samples, "bridgemon_check_up", site="20242", check="sip") == 1
    assert value(samples, "bridgemon_check_up", site="48", check="icmp") == 1
    assert value(samples, "bridgemon_sip_status_code", site="20242", transport="udp") == 200
    assert value(samples, "bridgemon_tls_cert_expiry_timestamp_seconds", site="20242",
                 check="web") == NOW + 3 * 86400
    assert value(samples, "bridgemon_round_overruns_total", interval="2s") == 1
    assert value(samples, "bridgemon_pinger_stray_replies_total") == 2
    assert value(samples, "bridgemon_config_sites", level="commune") == 2
    assert value(samples, "bridgemon_level_info", level="commune", name="commune",
                 depth="1") == 1


def test_a_removed_site_vanishes_from_every_family() -> None:
    rounds = {"48": SiteRound(NOW, (icmp("127.0.0.1", (0.01,)),)),
              "20242": SiteRound(NOW, (icmp("127.0.0.2", (0.01,)),))}
    before = render(snapshot(SITES, rounds)).decode()
    assert 'site="20242"' in before
    # the store still has its last round, but the inventory no longer has the site
    after = render(snapshot(SITES[:1] + SITES[2:], rounds)).decode()
    assert 'site="20242"' not in after and 'site="48"' in after


@patches_hot_modules
def test_an_icmp_only_site_is_written_alike_by_either_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A site probed by ICMP alone (most of a national inventory) is written from bytes
    # templates; every other site by the general path. Both must write the same bytes.
    from bridgemon import metrics
    from bridgemon.metrics import _any_site_series, site_label, site_series
    from bridgemon.readiness import judge_own

    def general_path(*args: object) -> tuple[bytes, ...]:
        raise AssertionError("an ICMP-only site went the general path")

    monkeypatch.setattr(metrics, "_any_site_series", general_path)
    config = parse_config(inventory_toml(SITES[:1], port=9, interval="10s",
                                         levels=["province"]), Path("t.toml"))
    site = config.inventory.sites["48"]
    shapes = [(0.010, 0.012, 0.011), (0.020, None, 0.024), (0.2, 0.31, 0.25),
              (1 / 3, 2 / 7, 0.000123456789), (None, None, 0.5)]
    for label in (site_label("48"), site_label("48", 'vantage="Hội trường %s",')):
        for rtts in shapes:
            rounds = (SiteRound(NOW, (icmp("127.0.0.1", rtts),)),)
            verdict = judge_own(site, rounds, NOW + 1)
            fast = site_series(label, b"info\n", verdict, rounds[0].results, (7, 5))
            general = _any_site_series(label.decode(), b"info\n", verdict,
                                       rounds[0].results, (7, 5))
            assert fast == general, rtts
            assert b"site_mos" in fast[8] and fast[5].count(b"\n") == 4
