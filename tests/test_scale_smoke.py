"""Short versions of the scale runs in benchmarks/: the shipped inventory on a fresh
start, and a thousand synthetic sites through a real daemon process. They check
behaviour (everything answered, nothing overran), never timing figures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.inventory import national_inventory
from tests.conftest import REPO, free_port, needs_root
from tests.helpers import get_json, scrape, value, wait_for_sync

pytestmark = needs_root


def _run(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridgemon", *args], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_shipped_inventory_is_all_ready_within_a_minute() -> None:
    port = free_port()
    started = time.monotonic()
    process = _run(["run", "--listen", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_sync(lambda: get_json(url + "/api/v1/sites")["summary"]["ready"] == 260, 60,
                      "all 260 shipped sites ready")
        elapsed = time.monotonic() - started
        summary = get_json(url + "/api/v1/sites")["summary"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert summary == {"total": 260, "ready": 260, "degraded": 0, "not_ready": 0,
                       "parent_down": 0, "unknown": 0}, output
    assert elapsed < 60


def test_a_thousand_sites_every_echo_answered_no_overrun(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "national.toml"
    config.write_text(national_inventory(1000, port=port, interval="5s", window=2, count=5,
                                         spacing="200ms", timeout="1s"), encoding="utf-8")
    process = _run(["-c", str(config), "run"])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_sync(lambda: get_json(url + "/healthz")["rounds"] >= 2, 30, "two rounds")
        samples = scrape(url + "/metrics")
        health = get_json(url + "/healthz")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode in (0, -15), output
    assert value(samples, "bridgemon_round_overruns_total", interval="5s") == 0
    assert value(samples, "bridgemon_round_sites", interval="5s") == 1000
    assert value(samples, "bridgemon_round_duration_seconds", interval="5s") < 5
    assert health["echoes_sent"] >= 10000
    # Per-site counters count finished bursts only, so nothing is in flight in them.
    sent = sum(v for _, v in samples["bridgemon_icmp_echoes_sent_total"])
    received = sum(v for _, v in samples["bridgemon_icmp_echoes_received_total"])
    assert sent >= 10000 and received == sent
    ready = [v for labels, v in samples["bridgemon_site_state"] if labels["state"] == "ready"]
    assert len(ready) == 1000 and sum(ready) == 1000
