"""The monitor's own link is cut, live: one vantage alert, no site alert, and recovery.

``bridgemon run`` probes lab sites and an anchor inside the lab; Prometheus scrapes it
every second and evaluates the shipped rules (time compressed 10 times); Alertmanager
runs the shipped routes and inhibit rules, its receivers posting to a webhook server in
this test. The whole lab link is then cut (one rule for the lab's whole range: nothing
crosses it), as when the monitoring server's uplink dies. Expected: the vantage is found
isolated, its failing sites are judged ``unknown`` (not ``not_ready``), exactly one
notification (BridgemonVantageIsolated) arrives, the site alerts that fire in Prometheus
reach Alertmanager muted; when the link returns the verdicts recover by themselves and
the vantage alert resolves. Everything listens on 127.0.0.1 or lives in the lab.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridgemon.lab import Lab
from tests.conftest import free_port
from tests.helpers import get_json, inventory_toml
from tests.integration.test_alerting import (
    Webhook,
    alertmanager,
    am_alerts,
    needs_alertmanager,
    needs_prometheus,
    prometheus,
    query,
    wait,
)

# 10, not test_alerting's 20: BridgemonSiteDown's `for: 1m` becomes 6 s, and the vantage
# alert must be in Alertmanager before it; a second of scrape, a second of evaluation and
# the anchors' 1 s timeout are not compressed.
SCALE = 10
ANCHOR = "198.18.45.1"
SITES: list[dict[str, Any]] = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "198.18.45.10"},
    {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
     "address": "198.18.45.11"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": "502",
     "address": "198.18.45.12"},
    {"id": "504", "name": "Huyện Tây Giang", "level": "district", "parent": "49",
     "address": "198.18.45.13"},
    {"id": "20410", "name": "Xã A Tiêng", "level": "commune", "parent": "504",
     "address": "198.18.45.14"},
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    with Lab("bmvantage", wait=60) as running:
        yield running


@pytest.mark.lab
@needs_prometheus
@needs_alertmanager
def test_the_monitors_own_link_is_cut(lab: Lab, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "sites.toml"
    text = inventory_toml(SITES, port=port, interval="1s", window=3, count=3, spacing="50ms",
                          timeout="500ms",
                          extra=f'\n[monitor.vantage]\nname = "qn-dc1"\nanchors = ["{ANCHOR}"]\n')
    config.write_text(text.replace("window = 3\n", f'window = 3\nstate_dir = "{tmp_path}"\n', 1),
                      encoding="utf-8")
    log = tmp_path / "bridgemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "bridgemon", "-c", str(config), "run"], cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        with (
            Webhook() as webhook,
            alertmanager(tmp_path, webhook.url) as am,
            prometheus(tmp_path, [f"127.0.0.1:{port}"], am, scale=SCALE) as prom,
        ):
            cut_and_restore(lab, webhook, am, prom, f"http://127.0.0.1:{port}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert daemon.returncode == 0, output
    assert "Traceback" not in output, output


def verdicts(api: str) -> dict[str, tuple[str, list[str]]]:
    body = get_json(f"{api}/api/v1/sites")
    return {site["id"]: (site["verdict"], site["problems"]) for site in body["sites"]}


def cut_and_restore(lab: Lab, webhook: Webhook, am: str, prom: str, api: str) -> None:
    # 1. All quiet: every site ready, the vantage up, nothing firing.
    wait(lambda: len(query(prom, "site:bridgemon_site_state:code == 0")) == len(SITES), 60,
         "every site ready in Prometheus")
    assert query(prom, 'bridgemon_vantage_up{vantage="qn-dc1"}')[0]["value"][1] == "1"
    assert query(prom, 'ALERTS{alertstate="firing"}') == []

    # 2. The whole link is cut.
    lab.impair(str(lab.net), down=True)
    wait(lambda: webhook.seen("BridgemonVantageIsolated", "firing", vantage="qn-dc1"), 30,
         "the vantage's isolation notification")
    wait(lambda: all(verdict == "unknown" and problems[:1] == ["vantage_isolated"]
                     for verdict, problems in verdicts(api).values()), 30,
         "every site judged unknown, for the monitor's own link")
    # The site alerts do fire in Prometheus (the sites answer nothing)...
    wait(lambda: len(query(prom, 'ALERTS{alertname="BridgemonSiteDown",alertstate="firing"}'))
         == len(SITES), 30, "the sites' down alerts firing in Prometheus")

    def sites_muted() -> bool:
        """... and reach Alertmanager, which holds them all as inhibited."""
        down = am_alerts(am, 'alertname="BridgemonSiteDown"')
        return len(down) == len(SITES) and all(
            a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in down)

    wait(sites_muted, 20, "Alertmanager to hold every site alert as inhibited")
    time.sleep(3)  # past a group_interval: still nothing but the vantage alert

    # 3. The link returns: the verdicts recover by themselves, the alert resolves.
    lab.clear(str(lab.net))
    wait(lambda: all(verdict == "ready" for verdict, _ in verdicts(api).values()), 30,
         "every site ready again")
    wait(lambda: webhook.seen("BridgemonVantageIsolated", "resolved", vantage="qn-dc1"), 60,
         "the isolation resolved")
    wait(lambda: not query(prom, 'ALERTS{alertstate="firing"}'), 30, "every alert resolved")
    time.sleep(3)

    notified = {(a["labels"]["alertname"], a["status"]) for a in webhook.alerts()}
    assert notified == {("BridgemonVantageIsolated", "firing"),
                        ("BridgemonVantageIsolated", "resolved")}, notified
