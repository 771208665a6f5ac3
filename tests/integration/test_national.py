"""The national roll-up, live: vantages, shards, two provincial Prometheus servers and a
central one, on lab sites.

* vantage ``qn`` (the province's data centre) is split over two daemons, ``--shard 1/2``
  and ``--shard 2/2``, of one inventory, both scraped by the province's Prometheus;
* vantage ``bo-tttt`` (the ministry's MCU: the primary vantage of the shipped national
  rules) is one daemon of the same inventory, scraped by the ministry's Prometheus;
* both Prometheus servers remote_write (the shipped stanza) into a central Prometheus
  started with ``--web.enable-remote-write-receiver``, which runs the shipped national
  rules (time compressed 20 times).

Then one commune is cut for the ministry's daemon alone — a host route in a routing
table only that daemon's uid looks up (``ip rule uidrange``), so its path fails while the
province's daemons still reach the commune through the lab — and another commune is cut
for everyone in the lab. The central Prometheus must say: the first is down "only from
bo-tttt" (and, bo-tttt being the primary, pages as such), the second is down from every
vantage. Every query of the national dashboard returns data from the central store.
Everything listens on 127.0.0.1 or lives in the lab; nothing else is sent anywhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridgemon.lab import Lab
from tests.conftest import REPO, free_port
from tests.helpers import get_json, inventory_toml, load_script
from tests.integration.test_alerting import (
    PROMETHEUS_BIN,
    needs_prometheus,
    process,
    query,
    scaled_rules,
    wait,
)

SCALE = 20
PROMETHEUS = REPO / "deploy" / "prometheus"
# The ministry's daemon runs as this uid; its routing table holds the cut path.
MINISTRY_UID = 47011
TABLE = "47011"
SITES: list[dict[str, Any]] = [
    {"id": "49", "name": "UBND tỉnh Quảng Nam", "level": "province", "address": "198.18.50.1"},
    *({"id": f"5{d:02d}", "name": f"Huyện {d}", "level": "district", "parent": "49",
       "address": f"198.18.5{d}.1"} for d in range(1, 5)),
    *({"id": f"20{d}{c:02d}", "name": f"Xã {d}-{c}", "level": "commune", "parent": f"5{d:02d}",
       "address": f"198.18.5{d}.{10 + c}"} for d in range(1, 5) for c in range(2)),
]
PATH_CUT = next(site for site in SITES if site["id"] == "20100")  # only the ministry's path
SITE_CUT = next(site for site in SITES if site["id"] == "20301")  # for everyone, in the lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    with Lab("bmnational", wait=60) as running:
        yield running


@pytest.fixture
def ministry_route() -> Iterator[None]:
    """The ministry's daemon (its uid) finds PATH_CUT unreachable; nothing else changes."""
    ip = ["ip", "rule", "add", "uidrange", f"{MINISTRY_UID}-{MINISTRY_UID}", "lookup", TABLE,
          "priority", "1000"]

    def remove() -> None:
        subprocess.run(["ip", "rule", "del", *ip[3:]], check=False, capture_output=True)
        subprocess.run(["ip", "route", "flush", "table", TABLE], check=False,
                       capture_output=True)

    remove()  # what a run killed half-way left behind ("RTNETLINK answers: File exists")
    subprocess.run(ip, check=True)
    try:
        yield
    finally:
        remove()


def write_config(directory: Path, vantage: str, port: int) -> Path:
    text = inventory_toml(SITES, port=port, interval="1s", window=3, count=3, spacing="50ms",
                          timeout="500ms", extra=f'\n[monitor.vantage]\nname = "{vantage}"\n')
    state = directory / "state"
    path = directory / f"{vantage}.toml"
    path.write_text(text.replace("window = 3\n", f'window = 3\nstate_dir = "{state}"\n', 1),
                    encoding="utf-8")
    return path


@contextlib.contextmanager
def daemon(argv: list[str], log: Path, cwd: Path, api: str) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                return bool(get_json(f"{api}/healthz"))
            except OSError:
                return False

        wait(up, 30, f"bridgemon ({log.name}) to answer")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        output = log.read_text(encoding="utf-8", errors="replace")
        assert proc.returncode == 0, output
        assert "Traceback" not in output, output


def remote_write(central: str) -> list[dict[str, Any]]:
    """The shipped stanza, sent to the central Prometheus on loopback, batches sent at once."""
    stanza = yaml.safe_load((PROMETHEUS / "remote-write.yml").read_text(encoding="utf-8"))
    (entry,) = stanza["remote_write"]
    entry["url"] = f"{central}/api/v1/write"
    entry["queue_config"]["batch_send_deadline"] = "1s"
    return [entry]


@contextlib.contextmanager
def prometheus(tmp: Path, name: str, config: dict[str, Any], rules: list[Path],
               *flags: str) -> Iterator[str]:
    home = tmp / name
    (home / "rules").mkdir(parents=True)
    for path in rules:
        (home / "rules" / path.name).write_text(
            scaled_rules(path.read_text(encoding="utf-8"), SCALE), encoding="utf-8")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                         "scrape_timeout": "1s", **config.pop("global", {})},
              "rule_files": [str(home / "rules" / "*.yml")], **config}
    path = home / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert PROMETHEUS_BIN is not None
    argv = [PROMETHEUS_BIN, f"--config.file={path}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", *flags]
    with process(argv, home / "log", f"{url}/-/ready", home, f"prometheus {name}"):
        yield url


def firing(central: str, alertname: str) -> set[tuple[str, str]]:
    """(site, vantage) of every firing alert of that name in the central Prometheus."""
    return {(a["metric"].get("site", ""), a["metric"].get("vantage", ""))
            for a in query(central, f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')}


@pytest.mark.lab
@needs_prometheus
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_two_vantages_and_shards_roll_up(lab: Lab, ministry_route: None,
                                         tmp_path: Path) -> None:
    # The ministry's daemon runs as its own uid: its files in a directory it can use.
    ministry_dir = Path(tempfile.mkdtemp(prefix="bridgemon-ministry-"))
    os.chmod(ministry_dir, 0o755)
    os.chown(ministry_dir, MINISTRY_UID, MINISTRY_UID)
    try:
        run(lab, tmp_path, ministry_dir)
    finally:
        shutil.rmtree(ministry_dir, ignore_errors=True)


def run(lab: Lab, tmp: Path, ministry_dir: Path) -> None:
    ports = {"qn1": free_port(), "qn2": free_port(), "bo": free_port()}
    qn = write_config(tmp, "qn", ports["qn1"])
    bo = write_config(ministry_dir, "bo-tttt", ports["bo"])
    bridgemon = [sys.executable, "-m", "bridgemon"]
    as_ministry = ["setpriv", f"--reuid={MINISTRY_UID}", f"--regid={MINISTRY_UID}",
                   "--clear-groups", "--inh-caps=+net_raw", "--ambient-caps=+net_raw"]
    api = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    central_rules = [PROMETHEUS / "central" / "rules" / "bridgemon-national.yml",
                     PROMETHEUS / "rules" / "bridgemon-vantages.yml"]
    provincial_rules = sorted((PROMETHEUS / "rules").glob("*.yml"))
    with contextlib.ExitStack() as stack:
        stack.enter_context(daemon([*bridgemon, "-c", str(qn), "run", "--shard", "1/2"],
                                   tmp / "qn1.log", tmp, api["qn1"]))
        stack.enter_context(daemon([*bridgemon, "-c", str(qn), "run", "--shard", "2/2",
                                    "--listen", f"127.0.0.1:{ports['qn2']}"],
                                   tmp / "qn2.log", tmp, api["qn2"]))
        stack.enter_context(daemon([*as_ministry, *bridgemon, "-c", str(bo), "run"],
                                   ministry_dir / "bo.log", ministry_dir, api["bo"]))
        central = stack.enter_context(prometheus(
            tmp, "central", {}, central_rules, "--web.enable-remote-write-receiver"))
        started = time.time()
        stack.enter_context(prometheus(
            tmp, "province", {
                "global": {"external_labels": {"prometheus": "quang-nam"}},
                "scrape_configs": [{"job_name": "bridgemon", "static_configs": [
                    {"targets": [f"127.0.0.1:{ports['qn1']}", f"127.0.0.1:{ports['qn2']}"]}]}],
                "remote_write": remote_write(central)}, provincial_rules))
        stack.enter_context(prometheus(
            tmp, "ministry", {
                "global": {"external_labels": {"prometheus": "bo"}},
                "scrape_configs": [{"job_name": "bridgemon", "static_configs": [
                    {"targets": [f"127.0.0.1:{ports['bo']}"]}]}],
                "remote_write": remote_write(central)}, provincial_rules))
        roll_up(lab, central, api, started)


def roll_up(lab: Lab, central: str, api: dict[str, str], started: float) -> None:
    everyone = {site["id"] for site in SITES}
    # 1. Every site, once per vantage: the two shards of qn together name each site once.
    def complete() -> bool:
        counts = {(r["metric"]["vantage"], r["metric"]["site"]): r["value"][1]
                  for r in query(central, "count by (vantage, site) (bridgemon_site_info)")}
        return set(counts) == {(v, s) for v in ("qn", "bo-tttt") for s in everyone}

    wait(complete, 60, "every site of both vantages in the central Prometheus")
    per_site = query(central, 'count by (site) (bridgemon_site_info{vantage="qn"})')
    assert {r["metric"]["site"]: r["value"][1] for r in per_site} == dict.fromkeys(everyone, "1")
    shards = {(r["metric"]["vantage"], r["metric"]["shard"])
              for r in query(central, "bridgemon_vantage_info")}
    assert shards == {("qn", "1/2"), ("qn", "2/2"), ("bo-tttt", "1/1")}
    wait(lambda: [r["value"][1] for r in query(central, "min(province:bridgemon_site_ready:ratio)")]
         == ["1"], 60, "every site ready nationally")

    # 2. Cut one commune for the ministry's daemon only, another for everyone.
    subprocess.run(["ip", "route", "add", "unreachable", f"{PATH_CUT['address']}/32",
                    "table", TABLE], check=True)
    lab.impair(str(SITE_CUT["address"]), down=True)

    def bo_sees(site_id: str) -> str:
        body = get_json(f"{api['bo']}/api/v1/sites/{site_id}")
        return str(body["verdict"])

    wait(lambda: bo_sees(str(PATH_CUT["id"])) == "not_ready", 30,
         "the ministry's daemon to find the commune not ready")
    owner = next(name for name in ("qn1", "qn2")
                 if any(row["id"] == PATH_CUT["id"]
                        for row in get_json(f"{api[name]}/api/v1/sites")["sites"]))
    assert get_json(f"{api[owner]}/api/v1/sites/{PATH_CUT['id']}")["verdict"] == "ready"

    # 3. What the central store says.
    wait(lambda: firing(central, "BridgemonSiteDownFromOneVantage")
         == {(str(PATH_CUT["id"]), "bo-tttt")}, 60, "the 'only from bo-tttt' warning")
    wait(lambda: firing(central, "BridgemonNationalSiteDownPrimary")
         == {(str(PATH_CUT["id"]), "bo-tttt")}, 60, "the primary vantage's page")
    wait(lambda: {site for site, _ in firing(central, "BridgemonNationalSiteDown")}
         == {str(SITE_CUT["id"])}, 60, "the down-from-every-vantage page")
    assert query(central, "national:bridgemon_sites_not_ready_every_vantage:count")[0][
        "value"][1] == "1"
    assert query(central, "national:bridgemon_sites_not_ready_some_vantage:count")[0][
        "value"][1] == "1"
    for alertname in ("BridgemonVantageShardDuplicated", "BridgemonVantageShardMissing",
                      "BridgemonPrimaryVantageUnknown"):
        assert not firing(central, alertname), alertname

    # 4. Every query of the national dashboard returns data from the central store.
    check = load_script("check_dashboards")
    dashboards = check.load(REPO / "dashboards" / "national" / "provisioning" / "dashboards"
                            / "national")
    values = {"province": ".*", "vantage": ".*", "__range": f"{time.time() - started:.0f}s",
              "__rate_interval": "4s", "__interval": "1s"}
    failures, _ = check.live_check(central, dashboards, values,
                                   range_seconds=time.time() - started)
    assert not failures, "\n".join(failures)

    lab.clear(str(SITE_CUT["address"]))
