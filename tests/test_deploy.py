"""Deployment files: the Alertmanager example (amtool), its Vietnamese templates, and the
systemd unit (systemd-analyze, and the daemon run with exactly the unit's privileges).

The Prometheus side (rules, promtool) is tests/test_rules.py; the live proof with real
Prometheus and Alertmanager servers is tests/integration/test_alerting.py.
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port, needs_root
from tests.helpers import get, inventory_toml, parse_exposition, wait_for_sync

ALERTMANAGER = REPO / "deploy" / "alertmanager"
UNIT = REPO / "deploy" / "systemd" / "bridgemon.service"

amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool not installed (Debian package 'prometheus-alertmanager'; .ci/run installs it)",
)


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd)


# -- Alertmanager -------------------------------------------------------------------------


@amtool
def test_amtool_check_config() -> None:
    result = run("amtool", "check-config", "alertmanager.yml", cwd=ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 inhibit rules" in result.stdout and "1 templates" in result.stdout


@amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=BridgemonSiteDown", "severity=critical", "site=502", "parent=49"],
         "oncall"),
        (["alertname=BridgemonSiteNotReady", "severity=warning", "site=20335", "parent=502"],
         "team"),
        (["alertname=BridgemonEventTestRunFailed", "severity=warning", "event=hn1"], "team"),
        (["alertname=BridgemonParentDown", "severity=info", "parent=502"], "null"),
        (["alertname=SomethingElse", "severity=info"], "log"),
        (["alertname=NoSeverity"], "team"),
    ],
)
def test_routing_by_severity(labels: list[str], receiver: str) -> None:
    result = run("amtool", "config", "routes", "test", "--config.file=alertmanager.yml",
                 *labels, cwd=ALERTMANAGER)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


@amtool
def test_notification_text_is_vietnamese_first(tmp_path: Path) -> None:
    data = {
        "receiver": "oncall", "status": "firing", "externalURL": "http://127.0.0.1:9093",
        "groupLabels": {"alertname": "BridgemonSiteDown", "parent": "49"},
        "commonLabels": {"alertname": "BridgemonSiteDown", "severity": "critical"},
        "commonAnnotations": {},
        "alerts": [
            {"status": "firing", "startsAt": "2025-06-01T01:02:03Z",
             "endsAt": "0001-01-01T00:00:00Z",
             "labels": {"alertname": "BridgemonSiteDown", "severity": "critical",
                        "site": "502", "parent": "49"},
             "annotations": {"summary": "Mất kết nối: Thành phố Tam Kỳ (502)",
                             "description": "Điểm cầu ... \nSite ...",
                             "runbook_url": "docs/runbook.md#bridgemonsitedown"}},
            {"status": "resolved", "startsAt": "2025-06-01T00:02:03Z",
             "endsAt": "2025-06-01T01:00:00Z",
             "labels": {"alertname": "BridgemonSiteDown", "severity": "critical",
                        "site": "504", "parent": "49"},
             "annotations": {"summary": "Mất kết nối: Huyện Tây Giang (504)",
                             "description": "x",
                             "runbook_url": "docs/runbook.md#bridgemonsitedown"}},
        ],
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = run("amtool", "template", "render", "--template.glob=templates/*.tmpl",
                 f"--template.data={path}", '--template.text={{ template "bridgemon.text" . }}',
                 cwd=ALERTMANAGER)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("[bridgemon] NGHIÊM TRỌNG: 1 cảnh báo — BridgemonSiteDown\n")
    assert "• Mất kết nối: Thành phố Tam Kỳ (502)" in text
    assert "docs/runbook.md#bridgemonsitedown" in text
    assert text.count("https://") == 1  # the relative runbook link made absolute
    assert "Bắt đầu / since: 08:02:03 01/06/2025 (UTC+7)" in text
    assert "ĐÃ KHẮC PHỤC / RESOLVED (1):\n• Mất kết nối: Huyện Tây Giang (504)" in text


# -- systemd ------------------------------------------------------------------------------


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_unit_grants_cap_net_raw_and_nothing_else() -> None:
    service = unit()["Service"]
    assert service["User"] == service["Group"] == "bridgemon"
    assert service["AmbientCapabilities"] == "CAP_NET_RAW"
    assert service["CapabilityBoundingSet"] == "CAP_NET_RAW"
    assert service["NoNewPrivileges"] == "yes"
    assert service["StateDirectory"] == service["ConfigurationDirectory"] == "bridgemon"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "PrivateUsers" not in service  # a namespaced CAP_NET_RAW opens no raw socket
    assert " run" in service["ExecStart"] and "/etc/bridgemon/sites.toml" in service["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """verify wants ExecStart's binary to exist: point it at this checkout's."""
    bridgemon = Path(sys.executable).parent / "bridgemon"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/bridgemon/bin/bridgemon", str(bridgemon))
    path = tmp_path / "bridgemon.service"
    path.write_text(text, encoding="utf-8")
    result = run("systemd-analyze", "verify", str(path))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # Exposure (0 safe … 10 exposed) times ten: at most 2.0, "OK".
    security = run("systemd-analyze", "security", "--offline=yes", "--threshold=20",
                   str(path))
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


# A wrapper that turns on MemoryDenyWriteExecute's kernel twin (PR_SET_MDWE, Linux 6.3+)
# before exec'ing the daemon; older kernels run it without.
MDWE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    print("PR_SET_MDWE unavailable:", os.strerror(ctypes.get_errno()), file=sys.stderr)
os.execv(sys.argv[1], sys.argv[1:])
"""


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_daemon_runs_with_only_the_units_capabilities(tmp_path: Path) -> None:
    """bridgemon run, stripped of every capability but the unit's (and, where the kernel
    can, of writable-executable memory), still opens raw ICMP sockets and judges a site.

    Still uid 0 (the interpreter may live under /root); without capabilities uid 0 has
    no privilege beyond owning files."""
    caps = unit()["Service"]["AmbientCapabilities"].lower().split()
    names = ",".join(f"+{cap.removeprefix('cap_')}" for cap in caps)
    port = free_port()
    config = tmp_path / "sites.toml"
    text = inventory_toml(
        [{"id": "1", "name": "Điểm cầu thử", "level": "province", "address": "127.0.0.1"}],
        port=port, interval="1s", window=3, count=3, spacing="50ms", timeout="300ms",
    )
    state = tmp_path / "state"
    config.write_text(text.replace("window = 3\n", f'window = 3\nstate_dir = "{state}"\n', 1),
                      encoding="utf-8")
    process = subprocess.Popen(
        ["setpriv", f"--inh-caps=-all,{names}", f"--ambient-caps=-all,{names}",
         f"--bounding-set=-all,{names}", "--no-new-privs",
         sys.executable, "-c", MDWE, sys.executable, "-m", "bridgemon", "-c", str(config),
         "run"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def judged() -> bool:
            status, body = get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            samples = parse_exposition(body.decode()) if status == 200 else {}
            return any(labels.get("site") == "1" and labels.get("state") == "ready"
                       and value == 1
                       for labels, value in samples.get("bridgemon_site_state", []))

        wait_for_sync(judged, 20, "the site to be judged ready")
        _, body = get(f"http://127.0.0.1:{port}/metrics")
        samples = parse_exposition(body.decode())
        assert any(labels.get("family") == "ipv4" and labels.get("mode") == "raw" and value == 1
                   for labels, value in samples["bridgemon_pinger_socket_info"])
        status = Path(f"/proc/{process.pid}/status").read_text()
        effective = int(next(line for line in status.splitlines()
                             if line.startswith("CapEff:")).split()[1], 16)
        assert effective == 1 << 13  # CAP_NET_RAW alone
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output


def test_notifications_are_grouped_per_vantage() -> None:
    """Every route (a route inherits its parent's group_by unless it sets its own) groups
    by vantage too: alerts of two vantages never share one message."""
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text(encoding="utf-8"))

    def walk(route: dict[str, object], inherited: list[str]) -> list[list[str]]:
        grouping = route.get("group_by", inherited)
        assert isinstance(grouping, list)
        children = route.get("routes", [])
        assert isinstance(children, list)
        return [grouping, *(g for child in children for g in walk(child, grouping))]

    for grouping in walk(config["route"], []):
        assert {"alertname", "parent", "vantage"} <= set(grouping), grouping
