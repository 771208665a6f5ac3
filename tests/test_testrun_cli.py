"""``bridgemon test``, ``history`` and ``report`` as a technician runs them, on loopback."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import REPO, add_route, needs_root

pytestmark = needs_root
SCHEMA = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))


def bridgemon(*args: str, state: Path, config: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bridgemon"]
    if config:
        argv += ["-c", config]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(state)},
    )


def test_a_district_tested_stored_and_rendered_again(tmp_path: Path) -> None:
    result = bridgemon("test", "--select", "under:516", "--count", "5", "--format", "json",
                       state=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["summary"]["total"] == 11 and report["summary"]["ready"] == 11
    assert report["status"] == "complete" and report["trigger"] == "cli"
    assert report["sites"][0]["name"] == "Huyện Nam Trà My"
    icmp = report["sites"][1]["checks"][0]
    assert icmp["type"] == "icmp" and icmp["sent"] == 5 and icmp["received"] == 5
    assert set(icmp["rtt_ms"]) == {"min", "avg", "max", "p95"}
    # without a terminal, progress is one plain line per site on stderr
    assert "[11/11]" in result.stderr and "Sẵn sàng" in result.stderr
    # and the last says where the run is stored and how to see it again
    assert result.stderr.splitlines()[-1] == (
        f"test run {report['run_id']} stored in {tmp_path / 'bridgemon.db'}; "
        f"again: bridgemon report {report['run_id']}")

    listed = json.loads(bridgemon("history", "--format", "json", state=tmp_path).stdout)
    assert [run["run_id"] for run in listed] == [report["run_id"]]
    assert listed[0]["status"] == "complete"

    again = bridgemon("report", report["run_id"], "--format", "json", state=tmp_path)
    assert json.loads(again.stdout) == report

    as_csv = bridgemon("report", report["run_id"], "--format", "csv", state=tmp_path).stdout
    rows = list(csv.reader(io.StringIO(as_csv)))
    assert len(rows) == 1 + 11 and any("Xã Trà Mai" in cell for cell in rows[5] + rows[6])

    page = tmp_path / "report.html"
    html = bridgemon("report", report["run_id"], "--format", "html", "-o", str(page),
                     state=tmp_path)
    assert html.returncode == 0
    text = _html_text(page.read_text(encoding="utf-8"))
    assert "BÁO CÁO KIỂM TRA KẾT NỐI ĐIỂM CẦU" in text and "Huyện Nam Trà My" in text


def _html_text(html: str) -> str:
    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def test_a_site_that_cannot_join_fails_the_run(tmp_path: Path, host_route: list[str]) -> None:
    add_route(host_route, "unreachable 198.19.254.0/24")
    config = tmp_path / "sites.toml"
    text = (REPO / "config" / "sites.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('address = "127.49.16.12"', 'address = "198.19.254.12"'),
                      encoding="utf-8")
    result = bridgemon("-c", str(config), "test", "--select", "under:516", "--count", "3",
                       state=tmp_path)
    assert result.returncode == 1, result.stderr
    out = result.stdout
    # the site that cannot join comes first, with its reason in words
    assert out.index("Xã Trà Tập") < out.index("Xã Trà Leng")
    assert "Chưa sẵn sàng" in out and "No route to" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select", "under:999"], "unknown site '999'"),
        (["--select", "level:ward"], "unknown level 'ward'"),
        (["--event", "nope"], "unknown event 'nope'"),
        (["--count", "0"], "--count must be between 1 and 1000"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = bridgemon("test", *args, state=tmp_path)
    assert result.returncode == 2 and message in result.stderr


def test_a_run_killed_midway_is_found_incomplete_and_nothing_else_is_lost(
    tmp_path: Path,
) -> None:
    first = bridgemon("test", "--select", "504", "--count", "2", "--format", "json",
                      state=tmp_path)
    assert first.returncode == 0
    done = json.loads(first.stdout)["run_id"]
    process = subprocess.Popen(
        [sys.executable, "-m", "bridgemon", "test", "--count", "60"], cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 3 and time.monotonic() < deadline:  # a few sites are final and stored
        if process.stderr.readline().startswith("["):
            seen += 1
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    runs = json.loads(bridgemon("history", "--format", "json", state=tmp_path).stdout)
    killed = next(run for run in runs if run["run_id"] != done)
    assert killed["status"] == "incomplete" and killed["sites_stored"] >= 3
    assert next(run for run in runs if run["run_id"] == done)["status"] == "complete"
    stored = json.loads(bridgemon("report", killed["run_id"], "--format", "json",
                                  state=tmp_path).stdout)
    assert len(stored["sites"]) == killed["sites_stored"]
