"""The alerting path proved live: real Alertmanager, real Prometheus, real bridgemon.

* ``test_alertmanager_routes_and_inhibits`` posts alerts straight to a real Alertmanager
  running the shipped alertmanager.yml (receivers rewritten to a webhook in this test):
  routing by severity and every inhibition rule, in a few seconds, without root.
* ``test_a_district_goes_down`` (lab, root): ``bridgemon run`` probes lab sites (province,
  two districts, their communes) with checks and a conference; Prometheus scrapes it every
  second and evaluates the shipped rules; Alertmanager notifies a webhook server in this
  test. A district is taken down in the lab: its alerts arrive, its communes' do not
  (inhibited); brought back, the resolved notifications arrive. Meanwhile every query of
  every dashboard runs against this Prometheus and must return data.

Time is compressed 20 times: probes every 1 s instead of 30 s, and a copy of the rules
with every ``for:``, ``keep_firing_for:`` and range selector divided by 20 (``for: 1m``
becomes 3 s, ``[15m:]`` 45 s). Everything listens on 127.0.0.1 (free ports), keeps its
data in the test's tmp dir, and is stopped at the end. Nothing is sent anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from bridgemon.lab import Lab
from tests.conftest import REPO, free_port
from tests.helpers import get, inventory_toml, load_script, wait_for_sync

SCALE = 20  # 30 s probe interval -> 1.5 s; we probe every 1 s, rules run 20x faster
RULES = REPO / "deploy" / "prometheus" / "rules"
ALERTMANAGER_YML = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
TEMPLATES = REPO / "deploy" / "alertmanager" / "templates"
ALERTMANAGER_BIN = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMETHEUS_BIN = shutil.which("prometheus")

needs_alertmanager = pytest.mark.skipif(
    ALERTMANAGER_BIN is None,
    reason="prometheus-alertmanager not installed (Debian package; .ci/run installs it)",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS_BIN is None, reason="prometheus not installed (Debian package; .ci/run installs it)"
)


# -- the pieces ---------------------------------------------------------------------------


class Webhook:
    """Alertmanager's webhook receiver: an HTTP server on 127.0.0.1 keeping every payload."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with received._lock:
                    received.payloads.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self) -> list[dict[str, Any]]:
        """Every notified alert: labels, status, plus the receiver that got it."""
        with self._lock:
            return [{**alert, "receiver": payload["receiver"]}
                    for payload in self.payloads for alert in payload["alerts"]]

    def seen(self, alertname: str, status: str, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts()
                if a["labels"].get("alertname") == alertname and a["status"] == status
                and all(a["labels"].get(k) == v for k, v in labels.items())]


@contextlib.contextmanager
def process(argv: list[str], log: Path, ready: str, cwd: Path, what: str) -> Iterator[None]:
    """Run a server until the block ends; ``ready`` is a URL that answers 200 once it is up."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        def up() -> bool:
            assert proc.poll() is None, f"{what} exited:\n{log.read_text(errors='replace')}"
            return get(ready, timeout=2)[0] == 200

        wait_for_sync(up, 30, f"{what} to be ready")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def alertmanager_config(webhook: str, *, group_wait: str, group_interval: str) -> dict[str, Any]:
    """The shipped alertmanager.yml, every receiver but "null" replaced by the webhook (the
    payload names the receiver, so routing stays visible), with short timings. Routes and
    inhibition rules are the shipped ones."""
    config = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    config.pop("global", None)  # SMTP settings of the example, unused here
    config["receivers"] = [
        {"name": r["name"]} if r["name"] == "null" else
        {"name": r["name"], "webhook_configs": [{"url": webhook, "send_resolved": True}]}
        for r in config["receivers"]
    ]

    def timings(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = group_wait if key == "group_wait" else group_interval
        route["repeat_interval"] = "1h"
        for child in route.get("routes", []):
            timings(child)

    timings(config["route"])
    return config


@contextlib.contextmanager
def alertmanager(tmp: Path, webhook: str) -> Iterator[str]:
    (tmp / "am").mkdir()
    config = alertmanager_config(webhook, group_wait="1s", group_interval="2s")
    shutil.copytree(TEMPLATES, tmp / "am" / "templates")
    path = tmp / "am" / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert ALERTMANAGER_BIN is not None
    argv = [ALERTMANAGER_BIN, f"--config.file={path}", f"--storage.path={tmp / 'am' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with process(argv, tmp / "am" / "log", f"{url}/-/ready", tmp / "am", "alertmanager"):
        yield url


def scale_duration(text: str, factor: float) -> str:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return f"{max(1, round(sum(int(n) * units[u] for n, u in parts) / factor))}s"


def scaled_rules(text: str, factor: float) -> str:
    """The rules with `for:`, `keep_firing_for:` and range selectors divided by ``factor``."""
    text = re.sub(r"^(\s*(?:for|keep_firing_for):\s*)(\S+)\s*$",
                  lambda m: m[1] + scale_duration(m[2], factor), text, flags=re.MULTILINE)
    return re.sub(r"\[((?:\d+(?:ms|s|m|h|d|w))+)(:[^\]]*)?\]",
                  lambda m: f"[{scale_duration(m[1], factor)}{m[2] or ''}]", text)


@contextlib.contextmanager
def prometheus(tmp: Path, targets: list[str], alertmanager_url: str,
               scale: float = SCALE) -> Iterator[str]:
    """A real Prometheus scraping ``targets`` every second with the shipped rules, their
    durations divided by ``scale``."""
    rules = tmp / "prom" / "rules"
    rules.mkdir(parents=True)
    for path in RULES.glob("*.yml"):
        (rules / path.name).write_text(scaled_rules(path.read_text(encoding="utf-8"), scale),
                                       encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": "bridgemon", "static_configs": [{"targets": targets}]}],
    }
    path = tmp / "prom" / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert PROMETHEUS_BIN is not None
    argv = [PROMETHEUS_BIN, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'prom' / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s"]
    with process(argv, tmp / "prom" / "log", f"{url}/-/ready", tmp / "prom", "prometheus"):
        yield url


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{params}", timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def am_alerts(alertmanager_url: str, *matchers: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode([("filter", m) for m in matchers])
    with urllib.request.urlopen(f"{alertmanager_url}/api/v2/alerts?{params}", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    wait_for_sync(lambda: bool(predicate()), timeout, what)


# -- Alertmanager alone -------------------------------------------------------------------


def alert(alertname: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": alertname, "severity": severity, **labels},
            "annotations": {"summary": alertname}}


@needs_alertmanager
def test_alertmanager_routes_and_inhibits(tmp_path: Path) -> None:
    posted = [
        alert("BridgemonParentDown", "info", parent="502"),
        alert("BridgemonSiteDown", "critical", site="502", parent="49"),
        alert("BridgemonSiteDown", "critical", site="20335", parent="502"),  # muted: parent
        alert("BridgemonEventParticipantNotReady", "critical", site="20338", parent="502",
              event="hn1"),  # muted: parent down
        alert("BridgemonSiteNotReady", "warning", site="504", parent="49"),
        alert("BridgemonHighLatency", "warning", site="504", parent="49", stat="avg"),  # muted
        alert("BridgemonCheckFailing", "warning", site="504", parent="49", check="sip"),  # muted
        alert("BridgemonSiteDown", "critical", site="20410", parent="504"),
        alert("BridgemonSiteNotReady", "warning", site="20410", parent="504"),  # muted: down
        alert("BridgemonSiteDown", "critical", site="49"),  # the top site: no parent
        alert("BridgemonTLSCertificateExpiring", "warning", site="49", check="web"),  # muted
        alert("BridgemonTLSCertificateExpiring", "critical", site="49", check="web"),
        alert("BridgemonEventTestRunMissing", "warning", event="hn2"),  # muted: critical
        alert("BridgemonEventTestRunMissing", "critical", event="hn2"),
    ]
    notified = {  # (alertname, severity, site or event) -> receiver
        ("BridgemonSiteDown", "critical", "502"): "oncall",
        ("BridgemonSiteNotReady", "warning", "504"): "team",
        ("BridgemonSiteDown", "critical", "20410"): "oncall",
        ("BridgemonSiteDown", "critical", "49"): "oncall",
        ("BridgemonTLSCertificateExpiring", "critical", "49"): "oncall",
        ("BridgemonEventTestRunMissing", "critical", "hn2"): "oncall",
    }
    with Webhook() as webhook, alertmanager(tmp_path, webhook.url) as url:
        request = urllib.request.Request(
            f"{url}/api/v2/alerts", data=json.dumps(posted).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

        def key(a: dict[str, Any]) -> tuple[str, str, str]:
            labels = a["labels"]
            return (labels["alertname"], labels["severity"],
                    labels.get("site") or labels.get("event") or labels.get("parent", ""))

        wait(lambda: {key(a) for a in webhook.alerts()} >= set(notified), 20,
             "the notifications")
        # Past another group_interval: nothing more arrives.
        time.sleep(3)
        got = {key(a): a["receiver"] for a in webhook.alerts()}
        assert got == notified
        # Alertmanager knows every posted alert and why the others stayed quiet.
        states = {key(a): a["status"] for a in am_alerts(url)}
        assert len(states) == len(posted)
        for k, status in states.items():
            if k in notified or k[0] == "BridgemonParentDown":
                assert status["state"] == "active", (k, status)
            else:
                assert status["state"] == "suppressed" and status["inhibitedBy"], (k, status)


# -- the whole path, live -----------------------------------------------------------------

PROVINCE, DISTRICT, OTHER_DISTRICT = "49", "502", "504"
COMMUNES = ("20335", "20338", "20341")  # under DISTRICT, which goes down
SLOW = "20410"  # under OTHER_DISTRICT, 200 ms away: degraded, ready
SITES: list[dict[str, Any]] = [
    {"id": PROVINCE, "name": "UBND tỉnh Quảng Nam", "level": "province",
     "address": "198.18.30.1"},
    {"id": DISTRICT, "name": "Thành phố Tam Kỳ", "level": "district", "parent": PROVINCE,
     "address": "198.18.31.1"},
    {"id": "20335", "name": "Phường Tân Thạnh", "level": "commune", "parent": DISTRICT,
     "address": "198.18.31.10"},
    {"id": "20338", "name": "Phường Phước Hòa", "level": "commune", "parent": DISTRICT,
     "address": "198.18.31.11"},
    {"id": "20341", "name": "Phường An Mỹ", "level": "commune", "parent": DISTRICT,
     "address": "198.18.31.12"},
    {"id": OTHER_DISTRICT, "name": "Huyện Tây Giang", "level": "district",
     "parent": PROVINCE, "address": "198.18.32.1"},
    # The 200 ms makes its TLS check (3 round trips) too slow for the 1 s interval.
    {"id": SLOW, "name": "Xã A Tiêng", "level": "commune", "parent": OTHER_DISTRICT,
     "address": "198.18.32.10", "checks": {"web": {"enabled": False}}},
    {"id": "20413", "name": "Xã Ch'ơm", "level": "commune", "parent": OTHER_DISTRICT,
     "address": "198.18.32.11"},
]
DOWN = "198.18.31.0/24"  # the district and its communes: a dead uplink
EVENT = "hn-canh-bao"

HTTPS_SERVER = """
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def inventory(port: int, state: Path) -> str:
    start = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")) + timedelta(minutes=20)
    extra = f"""
[profiles.default.checks.h323]
type = "h323"
timeout = "800ms"

[profiles.default.checks.web]
type = "https"
port = 8443
verify_tls = false
required = false
timeout = "800ms"

[test]
count = 5
spacing = "50ms"
timeout = "500ms"

[[events]]
id = "{EVENT}"
title = "Hội nghị thử nghiệm cảnh báo"
start = "{start:%Y-%m-%dT%H:%M:%S}"
duration = "1h"
participants = "under:{PROVINCE}"
pretests = ["30m"]
"""
    text = inventory_toml(SITES, port=port, interval="1s", window=3, count=3, spacing="50ms",
                          timeout="500ms", extra=extra)
    return text.replace("window = 3\n", f'window = 3\nstate_dir = "{state}"\n', 1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    from tests.peers.certs import make_certs

    certs = tmp_path_factory.mktemp("certs")
    make_certs(certs)
    script = certs / "https_server.py"
    script.write_text(HTTPS_SERVER, encoding="utf-8")
    with Lab("bmalert", wait=60) as running:
        running.impair("198.18.32.10", delay_ms=200)
        running.spawn([sys.executable, "-m", "bridgemon.lab.servers", "--tcp", "1720"])
        running.spawn([sys.executable, str(script), str(certs / "valid.pem"),
                       str(certs / "valid.key")])
        running.wait_port("198.18.30.1", 1720, timeout=10)
        running.wait_port("198.18.30.1", 8443, timeout=10)
        yield running


@pytest.mark.lab
@needs_prometheus
@needs_alertmanager
def test_a_district_goes_down(lab: Lab, tmp_path: Path) -> None:
    started = time.monotonic()
    port = free_port()
    config = tmp_path / "sites.toml"
    config.write_text(inventory(port, tmp_path / "state"), encoding="utf-8")
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
            prometheus(tmp_path, [f"127.0.0.1:{port}"], am) as prom,
        ):
            prom_started = time.time()
            run_with_everything_up(lab, webhook, am, prom, prom_started, started)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert daemon.returncode == 0, output
    assert "Traceback" not in output, output


def run_with_everything_up(lab: Lab, webhook: Webhook, am: str, prom: str,
                           prom_started: float, started: float) -> None:
    timings: dict[str, float] = {}

    def mark(what: str) -> None:
        timings[what] = round(time.monotonic() - started, 1)

    # 1. Every site judged (the slow one degraded), the conference's catch-up test run done,
    #    all rules evaluated: and no notification at all.
    wait(lambda: len(query(prom, "site:bridgemon_site_state:code <= 1")) == len(SITES), 60,
         "every site ready or degraded in Prometheus")
    wait(lambda: query(prom, f'bridgemon_testrun_timestamp_seconds{{event="{EVENT}"}}'), 60,
         "the conference's catch-up test run")
    assert query(prom, f'site:bridgemon_site_state:code{{site="{SLOW}"}}')[0]["value"][1] == "1"
    time.sleep(3)
    assert query(prom, 'ALERTS{alertstate="firing"}') == []
    assert webhook.alerts() == []
    mark("all quiet")

    # 2. The district's uplink dies: its alerts arrive (critical, to the on-call receiver);
    #    its communes' alerts fire in Prometheus and reach Alertmanager, which mutes them.
    lab.impair(DOWN, down=True)
    down_at = time.monotonic()
    wait(lambda: webhook.seen("BridgemonSiteDown", "firing", site=DISTRICT), 30,
         "the district's down notification")
    timings["down notified after"] = round(time.monotonic() - down_at, 1)
    wait(lambda: webhook.seen("BridgemonEventParticipantNotReady", "firing", site=DISTRICT,
                              severity="critical"), 30,
         "the district's conference notification")
    (notice,) = webhook.seen("BridgemonSiteDown", "firing", site=DISTRICT)
    assert notice["receiver"] == "oncall"
    assert notice["annotations"]["summary"] == "Mất kết nối: Thành phố Tam Kỳ (502)"
    assert "thuộc UBND tỉnh Quảng Nam (49)" in notice["annotations"]["description"]
    wait(lambda: len(query(prom, f'ALERTS{{alertname="BridgemonSiteDown", alertstate="firing",'
                                 f' parent="{DISTRICT}"}}')) == len(COMMUNES), 30,
         "the communes' down alerts firing in Prometheus")

    def communes_muted() -> bool:
        """The communes' down and conference alerts are in Alertmanager, all inhibited."""
        muted = am_alerts(am, f'parent="{DISTRICT}"', 'alertname!="BridgemonParentDown"')
        down = {a["labels"]["site"] for a in muted
                if a["labels"]["alertname"] == "BridgemonSiteDown"}
        conference = {a["labels"]["site"] for a in muted
                      if a["labels"]["alertname"] == "BridgemonEventParticipantNotReady"}
        return down == conference == set(COMMUNES) and all(
            a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in muted)

    wait(communes_muted, 20, "Alertmanager to hold the communes' alerts as inhibited")
    mark("communes muted")

    # 3. While it is down: every query of every dashboard returns data.
    check = load_script("check_dashboards")
    values = {"vantage": ".*", "level": ".*", "parent": ".*", "site": DISTRICT, "event": EVENT,
              "__range": f"{time.time() - prom_started:.0f}s", "__rate_interval": "4s",
              "__interval": "1s"}
    # (dashboard uid, title): the path-test panels need a packet train or MTU check in the
    # rounds, which this 1-second daemon never runs; tests/test_dashboard_paths.py runs them.
    path_panels = ("Mất gói luồng STAMP", "Jitter luồng STAMP", "Trễ khứ hồi luồng STAMP",
                   "Tốc độ đi qua", "MOS video (STAMP)", "MTU đường truyền")
    skip = {("bridgemon-site", title) for title in path_panels}
    dashboards = check.load()
    failures, skipped = check.live_check(prom, dashboards, values,
                                         range_seconds=time.time() - prom_started, skip=skip)
    assert not failures, "\n".join(failures)
    assert len(skipped) == len(path_panels), skipped
    timings["dashboard queries"] = len(list(check.queries(dashboards)))
    mark("dashboards queried")

    # 4. Back up: resolved notifications arrive; the communes never paged.
    lab.clear(DOWN)
    up_at = time.monotonic()
    wait(lambda: webhook.seen("BridgemonSiteDown", "resolved", site=DISTRICT), 30,
         "the district's resolved notification")
    timings["resolved notified after"] = round(time.monotonic() - up_at, 1)
    wait(lambda: webhook.seen("BridgemonEventParticipantNotReady", "resolved", site=DISTRICT,
                              severity="critical"), 30,
         "the conference notification resolved")
    # The parent-down inhibitor holds 2 m / 20 = 6 s more; then one group_interval.
    wait(lambda: not query(prom, 'ALERTS{alertstate="firing"}'), 30, "every alert resolved")
    time.sleep(3)
    mark("all resolved")

    notified = {(a["labels"]["alertname"], a["labels"].get("site"), a["status"])
                for a in webhook.alerts()}
    assert notified == {
        ("BridgemonSiteDown", DISTRICT, "firing"),
        ("BridgemonSiteDown", DISTRICT, "resolved"),
        ("BridgemonEventParticipantNotReady", DISTRICT, "firing"),
        ("BridgemonEventParticipantNotReady", DISTRICT, "resolved"),
    }, notified
    print("timings (s since the test started):", timings)
