"""A pre-event test run against impaired lab sites, and a daemon killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridgemon.lab import Lab
from tests.conftest import REPO, free_port
from tests.helpers import get_json, inventory_toml, wait_for_sync

pytestmark = pytest.mark.lab

SITES: list[dict[str, Any]] = [
    {"id": "48", "name": "UBND thành phố Đà Nẵng", "level": "province",
     "address": "198.18.20.1"},
    {"id": "490", "name": "Quận Hải Châu", "level": "district", "parent": "48",
     "address": "198.18.21.1"},
    {"id": "20242", "name": "Phường Hải Châu I", "level": "commune", "parent": "490",
     "address": "198.18.21.10"},
    {"id": "20245", "name": "Phường Thạch Thang", "level": "commune", "parent": "490",
     "address": "198.18.21.11"},
    {"id": "20248", "name": "Phường Thanh Bình", "level": "commune", "parent": "490",
     "address": "198.18.21.12"},
    {"id": "497", "name": "Huyện Hòa Vang", "level": "district", "parent": "48",
     "address": "198.18.22.1"},
    {"id": "20308", "name": "Xã Hòa Bắc", "level": "commune", "parent": "497",
     "address": "198.18.22.10"},
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    with Lab("bmtr", wait=60) as running:
        running.impair("198.18.21.11", delay_ms=40)
        running.impair("198.18.21.12", loss=0.3)
        running.impair("198.18.22.0/24", down=True)  # Hòa Vang and its communes
        yield running


def test_commune_run_judges_each_site_with_the_lab_impairments(
    lab: Lab, tmp_path: Path
) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(inventory_toml(SITES, port=free_port()), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bridgemon", "-c", str(config), "test",
         "--select", "level:commune", "--count", "20", "--format", "json"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")},
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    sites = {site["id"]: site for site in report["sites"]}
    assert set(sites) == {"20242", "20245", "20248", "20308"}  # districts probed, not listed
    assert sites["20242"]["verdict"] == "ready"
    delayed = sites["20245"]
    assert delayed["verdict"] == "ready"
    assert 39.0 < delayed["checks"][0]["rtt_ms"]["avg"] < 42.0
    lossy = sites["20248"]
    assert lossy["verdict"] == "not_ready" and lossy["reasons"][0].startswith("loss ")
    # the district was not selected, yet it was probed: its commune is parent_down
    assert sites["20308"]["verdict"] == "parent_down"
    assert sites["20308"]["reasons"][0] == "parent Huyện Hòa Vang (497) is down"
    assert report["summary"] == {"total": 4, "ready": 2, "degraded": 0, "not_ready": 1,
                                 "parent_down": 1, "unknown": 0}


def _post(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    """POST as a script should: a 503 ("starting up": the test runs' store is still being
    opened after /healthz already answers) is tried again for a while."""
    deadline = time.monotonic() + 20
    while True:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_a_daemon_killed_mid_run_keeps_its_history(lab: Lab, tmp_path: Path) -> None:
    port = free_port()
    token = "token-for-the-kill-test"
    config = tmp_path / "sites.toml"
    config.write_text(
        inventory_toml(SITES, port=port, extra=f'\n[api]\ntoken = "{token}"\n'),
        encoding="utf-8",
    )
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    base = f"http://127.0.0.1:{port}"

    def daemon() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridgemon", "-c", str(config), "run"], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )
        # /healthz answers before the test runs' store is open; it says when that is done
        wait_for_sync(lambda: get_json(base + "/healthz")["test_runs"] == "ready", 20,
                      "daemon up with its test runs")
        return process

    first = daemon()
    try:
        quick = _post(base + "/api/v1/test-runs", {"select": "490", "count": 3}, token)
        wait_for_sync(lambda: get_json(f"{base}/api/v1/test-runs/{quick['run_id']}")
                      ["status"] == "complete", 20, "the quick run")
        # 200 echoes 100 ms apart: the dead district keeps this run going for 20 s
        slow = _post(base + "/api/v1/test-runs", {"select": "*", "count": 200}, token)
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    second = daemon()
    try:
        runs = {run["run_id"]: run for run in get_json(base + "/api/v1/test-runs")["test_runs"]}
        assert runs[quick["run_id"]]["status"] == "complete"
        assert runs[slow["run_id"]]["status"] == "incomplete"
        report = get_json(f"{base}/api/v1/test-runs/{quick['run_id']}")
        assert report["sites"][0]["name"] == "Quận Hải Châu"
    finally:
        second.terminate()
        second.wait(timeout=20)
