"""The real daemon against impaired sites in the lab: what a technician would see.

One lab and one ``bridgemon run`` process for the module; impairments are set before the
daemon starts (or changed while it runs, for the flip test). Everything stays inside the
lab's range, 198.18.0.0/16, routed into a namespace this test creates.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridgemon.lab import Lab
from tests.conftest import REPO, free_port
from tests.helpers import get_json, inventory_toml, scrape, value, wait_for_sync

pytestmark = pytest.mark.lab

INTERVAL = 2.0
WINDOW = 5
COUNT = 10
LOSSY_COUNT = 40

SITES: list[dict[str, Any]] = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "198.18.10.1"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "198.18.11.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "198.18.11.10"},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": "502",
     "address": "198.18.11.11"},
    {"id": "20341", "name": "Phường An Mỹ", "level": "commune", "parent": "502",
     "address": "198.18.11.12", "profile": "lossy"},
    {"id": "20344", "name": "Phường Hòa Hương", "level": "commune", "parent": "502",
     "address": "198.18.11.13"},
    {"id": "20347", "name": "Phường An Xuân", "level": "commune", "parent": "502",
     "address": "198.18.11.14"},
    {"id": "20350", "name": "Phường An Sơn", "level": "commune", "parent": "502",
     "address": "198.18.11.15"},
    {"id": "20353", "name": "Phường Trường Xuân", "level": "commune", "parent": "502",
     "address": "198.18.99.5"},
    {"id": "20356", "name": "Phường An Phú", "level": "commune", "parent": "502",
     "address": "198.18.11.16", "profile": "codec"},
    {"id": "20359", "name": "Xã Tam Thanh", "level": "commune", "parent": "502",
     "address": "198.18.11.17", "profile": "codec", "checks": {"sip": {"port": 5070}}},
    {"id": "20362", "name": "Xã Tam Thăng", "level": "commune", "parent": "502",
     "address": "198.18.11.18", "profile": "codec"},
    {"id": "504", "name": "Huyện Tây Giang", "level": "district", "parent": "49",
     "address": "198.18.12.1"},
    {"id": "20410", "name": "Xã A Tiêng", "level": "commune", "parent": "504",
     "address": "198.18.12.10"},
]
BASELINE, DELAYED, SLOW, LOSSY, DEAD, FLIP = "20335", "20338", "20350", "20341", "20344", "20347"
SIP_OK, SIP_CLOSED, SIP_FILTERED = "20356", "20359", "20362"
UNREACHABLE = "20353"

PROFILES = f"""
[profiles.lossy.icmp]
count = {LOSSY_COUNT}
spacing = "20ms"

[profiles.codec.checks.sip]
type = "sip"
timeout = "1s"
[profiles.codec.checks.h323]
type = "h323"
timeout = "1s"
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    with Lab("bmit", wait=60) as running:
        running.impair("198.18.11.11", delay_ms=40)
        running.impair("198.18.11.15", delay_ms=200)
        running.impair("198.18.11.12", loss=0.10)
        running.impair("198.18.11.13", down=True)
        running.impair("198.18.12.0/24", down=True)
        running.impair("198.18.11.18", drop=["udp:5060"])
        # A codec's services inside the lab: SIP on UDP 5060, H.323 on TCP 1720.
        servers = running.spawn(
            [sys.executable, "-m", "bridgemon.lab.servers", "--sip", "5060", "--tcp", "1720",
             "--ready"], stdout=subprocess.PIPE, text=True,
        )
        assert servers.stdout is not None and servers.stdout.readline().strip() == "ready"
        # Inside the namespace, 198.18.99.0/24 is routed nowhere: its kernel answers our
        # echoes with ICMP "host unreachable", the error path of the engine. (The local
        # table is moved behind our rule, else the lab's local route would answer.)
        for command in (
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ["ip", "rule", "add", "pref", "100", "lookup", "local"],
            ["ip", "rule", "del", "pref", "0", "lookup", "local"],
            ["ip", "rule", "add", "to", "198.18.99.0/24", "lookup", "100", "pref", "10"],
            ["ip", "route", "add", "unreachable", "198.18.99.0/24", "table", "100"],
        ):
            subprocess.run(running.exec_argv(command), check=True)
        yield running


@pytest.fixture(scope="module")
def daemon(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    path = Path(tmp_path_factory.mktemp("lab")) / "sites.toml"
    path.write_text(
        inventory_toml(SITES, port=port, interval=f"{INTERVAL:g}s", window=WINDOW, count=COUNT,
                       spacing="50ms", timeout="500ms", extra=PROFILES),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bridgemon", "-c", str(path), "run"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # A full window of rounds for every site before anything is judged.
        def windows_full() -> bool:
            sites = get_json(f"{url}/api/v1/sites")["sites"]
            return all(
                len(s["checks"]) and s["window"]["sent"] >= WINDOW * s["checks"][0]["sent"]
                for s in sites if s["id"] != UNREACHABLE
            )

        wait_for_sync(windows_full, WINDOW * INTERVAL + 30, "a full window of rounds")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "Traceback" not in output, output


def site(url: str, site_id: str) -> dict[str, Any]:
    return get_json(f"{url}/api/v1/sites/{site_id}")  # type: ignore[no-any-return]


def test_injected_delay_is_measured_within_a_millisecond(daemon: str) -> None:
    baseline = site(daemon, BASELINE)["window"]
    delayed = site(daemon, DELAYED)["window"]
    assert baseline["received"] == baseline["sent"] and delayed["received"] == delayed["sent"]
    added = delayed["rtt_ms"]["avg"] - baseline["rtt_ms"]["avg"]
    assert abs(added - 40.0) <= 1.0, f"measured {added:.3f} ms for an injected 40 ms"
    assert site(daemon, DELAYED)["verdict"] == "ready"


def test_slow_site_is_degraded_with_the_reason(daemon: str) -> None:
    slow = site(daemon, SLOW)
    assert slow["verdict"] == "degraded"
    assert slow["reasons"][0].startswith("RTT 20") and slow["reasons"][0].endswith(" > 150 ms")
    assert slow["reasons_vi"][0].startswith("độ trễ")


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """The central interval of Binomial(n, p) holding at least ``confidence``."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    tail = (1 - confidence) / 2
    low, acc = 0, 0.0
    while acc + pmf[low] < tail:
        acc += pmf[low]
        low += 1
    high, acc = n, 0.0
    while acc + pmf[high] < tail:
        acc += pmf[high]
        high -= 1
    return low, high


def test_ten_percent_loss_is_estimated_within_the_binomial_interval(daemon: str) -> None:
    lossy = site(daemon, LOSSY)
    window = lossy["window"]
    assert window["sent"] == WINDOW * LOSSY_COUNT
    lost = window["sent"] - window["received"]
    low, high = binomial_interval(window["sent"], 0.10)
    assert low <= lost <= high, f"{lost} lost of {window['sent']}, expected {low}..{high}"
    # The verdict follows the loss measured, not the loss injected: 10 % lost on the wire
    # shows as 5 % or less in about one window of a hundred, and then it is only degraded.
    ratio = lost / window["sent"]
    expected = "not_ready" if ratio > 0.05 else "degraded"
    assert lossy["verdict"] == expected and "loss" in lossy["problems"], (lost, lossy)


def test_dead_site_is_not_ready(daemon: str) -> None:
    dead = site(daemon, DEAD)
    assert dead["verdict"] == "not_ready" and dead["up"] is False
    assert dead["reasons"][0] == f"no reply to {COUNT} echoes"


def test_commune_under_a_dead_district_is_parent_down(daemon: str) -> None:
    district, commune = site(daemon, "504"), site(daemon, "20410")
    assert district["verdict"] == "not_ready"
    assert commune["verdict"] == "parent_down"
    assert commune["reasons"][0] == "parent Huyện Tây Giang (504) is down"
    samples = scrape(f"{daemon}/metrics")
    assert value(samples, "bridgemon_site_state", site="20410", state="parent_down") == 1
    assert value(samples, "bridgemon_site_state", site="504", state="not_ready") == 1
    assert value(samples, "bridgemon_site_problem", site="20410", problem="parent_down",
                 severity="parent_down") == 1


def test_icmp_error_reply_becomes_the_reason(daemon: str) -> None:
    unreachable = site(daemon, UNREACHABLE)
    assert unreachable["verdict"] == "not_ready"
    assert "host unreachable (from 198.19.255.253)" in unreachable["reasons"][0]


def test_verdict_flips_within_one_window(daemon: str, lab: Lab) -> None:
    assert site(daemon, FLIP)["verdict"] == "ready"
    window_seconds = WINDOW * INTERVAL
    lab.impair("198.18.11.14", down=True)
    started = time.monotonic()
    wait_for_sync(lambda: site(daemon, FLIP)["verdict"] == "not_ready",
                  window_seconds + INTERVAL, "the site to turn not_ready")
    went_down = time.monotonic() - started
    lab.clear("198.18.11.14")
    started = time.monotonic()
    wait_for_sync(lambda: site(daemon, FLIP)["verdict"] == "ready",
                  window_seconds + 2 * INTERVAL, "the site to turn ready again")
    came_back = time.monotonic() - started
    # Down shows at the first round without replies; back needs the lost rounds to leave
    # the window (loss must fall under 1 % again).
    assert went_down <= 2 * INTERVAL + 1
    assert came_back <= window_seconds + 2 * INTERVAL
    samples = scrape(f"{daemon}/metrics")
    assert value(samples, "bridgemon_round_overruns_total", interval="2s") == 0


def test_a_site_answering_ping_with_its_sip_port_closed_is_not_ready(daemon: str) -> None:
    healthy = site(daemon, SIP_OK)
    assert healthy["verdict"] == "ready", healthy["reasons"]
    sip = next(check for check in healthy["checks"] if check["name"] == "sip")
    assert sip["ok"] and sip["status_code"] == 200
    closed = site(daemon, SIP_CLOSED)
    assert closed["up"] is True and closed["verdict"] == "not_ready"
    assert closed["reasons"] == ["SIP OPTIONS: nothing listens on UDP 5070 "
                                 "(ICMP port unreachable)"]
    filtered = site(daemon, SIP_FILTERED)
    assert filtered["up"] is True and filtered["verdict"] == "not_ready"
    assert filtered["reasons"][0].startswith("SIP OPTIONS: no answer in 1 s")
    samples = scrape(f"{daemon}/metrics")
    assert value(samples, "bridgemon_check_up", site=SIP_CLOSED, check="sip") == 0
    assert value(samples, "bridgemon_check_up", site=SIP_CLOSED, check="h323") == 1
    assert value(samples, "bridgemon_sip_status_code", site=SIP_OK, transport="udp") == 200
    assert value(samples, "bridgemon_sip_status_code", site=SIP_FILTERED, transport="udp") == 0
