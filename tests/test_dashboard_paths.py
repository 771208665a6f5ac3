"""The site dashboard's "Path test (STAMP)" row against a real Prometheus: it scrapes an
exposition rendered by bridgemon.metrics from a round with a train and an MTU check (the
probes' own results), and every query of the row must return data for that site — the
live check tests/integration/test_alerting.py runs on the other rows."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from bridgemon.metrics import render
from tests.helpers import PROMETHEUS, running_prometheus
from tests.test_dashboards import check
from tests.test_metrics_paths import WITH_PATH_CHECKS, snapshot, uplink_loss_round

ROW = "Kiểm tra đường truyền (STAMP) / Path test (STAMP)"


def row_titles(dashboard: dict) -> set[str]:  # type: ignore[type-arg]
    """The titles of the panels under the row titled ``ROW`` (up to the next row)."""
    titles: set[str] = set()
    inside = False
    for panel in sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"],
                                                            p["gridPos"]["x"])):
        if panel["type"] == "row":
            inside = panel["title"] == ROW
        elif inside:
            titles.add(panel["title"])
    return titles


def test_the_site_dashboard_has_the_path_row() -> None:
    site = check.load()["site.json"]
    titles = row_titles(site)
    assert titles == {"Mất gói luồng STAMP", "Jitter luồng STAMP", "Trễ khứ hồi luồng STAMP",
                      "Tốc độ đi qua", "MOS video (STAMP)", "MTU đường truyền"}
    exprs = " ".join(q.expr for q in check.queries({"site.json": site}) if q.title in titles)
    for name in ("bridgemon_stamp_loss_ratio", "bridgemon_stamp_jitter_seconds",
                 "bridgemon_stamp_delay_seconds", "bridgemon_stamp_rate_bits_per_second",
                 "bridgemon_stamp_mos", "bridgemon_path_mtu_bytes"):
        assert f'{name}{{site="$site", vantage=~"$vantage"}}' in exprs, name


@contextmanager
def serving(body: bytes) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def prometheus(tmp: Path, target: str) -> AbstractContextManager[str]:
    return running_prometheus(tmp, {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "bridgemon", "static_configs": [{"targets": [target]}]}],
    })


@pytest.mark.skipif(PROMETHEUS is None,
                    reason="prometheus not installed (Debian package; .ci/run installs it)")
def test_every_query_of_the_path_row_returns_data(tmp_path: Path) -> None:
    body = render(snapshot(WITH_PATH_CHECKS, {"48": uplink_loss_round()}))
    dashboards = check.load()
    titles = row_titles(dashboards["site.json"])
    others = {(q.dashboard, q.title) for q in check.queries(dashboards)
              if not (q.dashboard == "bridgemon-site" and q.title in titles)}
    values = {"vantage": ".*", "level": ".*", "parent": ".*", "site": "48", "event": "none",
              "__range": "60s", "__rate_interval": "4s", "__interval": "1s"}
    with serving(body) as target, prometheus(tmp_path, target) as prom:
        started = time.time()
        failures: list[str] = ["not run"]
        while time.time() - started < 30:  # a few scrapes
            time.sleep(1)
            failures, skipped = check.live_check(prom, dashboards, values,
                                                 range_seconds=time.time() - started + 5,
                                                 skip=others)
            if not failures:
                break
    assert not failures, "\n".join(failures)
    ran = [q for q in check.queries(dashboards) if (q.dashboard, q.title) not in others]
    assert len(ran) == 6 and len(skipped) == len(list(check.queries(dashboards))) - 6
