"""``bridgemon probe 'stamp://…'``: a real train from the command line to ``bridgemon
reflect`` on loopback, its verdict as the exit status and its figures in the JSON."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from bridgemon import exits
from tests.conftest import REPO
from tests.test_cli_reflect import ENV, HOST, reflecting

# 1 Mbit/s of 200-octet packets for half a second: 274 packets, light on a shared box.
TRAIN = "rate=1M&size=200&duration=0.5s&wait=0.5s"


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridgemon", "probe", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**ENV, "COLUMNS": "200"})  # a table's title on one line


def words(text: str) -> str:
    """The text with its line breaks and runs of spaces as single spaces (a table's
    title wraps at the table's width)."""
    return " ".join(text.split())


def test_a_train_to_a_reflector_passes_with_its_figures() -> None:
    with reflecting() as (port, _proc):
        url = f"stamp://{HOST}:{port}?{TRAIN}"
        as_json = probe(url, "--format", "json")
        as_table = probe(url, "--format", "table")
    assert as_json.returncode == exits.OK, as_json.stderr
    view = json.loads(as_json.stdout)
    assert (view["type"], view["name"], view["target"], view["ok"], view["state"]) == \
        ("stamp", "stamp", f"{HOST}:{port}", True, "ready")
    assert (view["rate_bps"], view["size"], view["duration_s"], view["dscp"]) == \
        (1_000_000, 200, 0.5, "AF41")
    assert view["sent"] == view["planned"] == 274
    assert view["round_trip"]["received"] == view["sent"]
    assert view["round_trip"]["rtt_ms"]["min"] > 0
    # The reflector is stateful: loss is known per direction.
    assert view["reflector_mode"] == "stateful"
    assert view["downlink"]["loss_ratio"] == view["uplink"]["loss_ratio"] == 0.0
    assert view["uplink"]["carried_bps"] > 0 and view["mos"] > 4
    assert view["reason"] is None and view["reasons"] == [] and view["error"] is None
    assert as_table.returncode == exits.OK, as_table.stderr
    assert "— ĐẠT (pass)" in words(as_table.stdout)
    assert "Sẵn sàng (ready)" in as_table.stdout
    assert "1 Mbit/s × 0.5 s, 200 B, AF41" in as_table.stdout


def test_no_reflector_fails_with_the_reason_in_both_languages() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    url = f"stamp://{HOST}:{port}?{TRAIN}"
    as_json = probe(url, "--format", "json")
    assert as_json.returncode == exits.FAIL, as_json.stderr
    view = json.loads(as_json.stdout)
    assert view["ok"] is False and view["state"] == "not_ready"
    assert view["round_trip"]["received"] == 0
    assert [reason["code"] for reason in view["reasons"]] == ["stamp_no_answer"]
    assert "no STAMP reflector answers" in view["reason"]
    assert "không có reflector STAMP trả lời" in view["reason_vi"]
    as_table = probe(url, "--format", "table")
    assert as_table.returncode == exits.FAIL
    assert "— KHÔNG ĐẠT (fail)" in words(as_table.stdout)
    assert "ICMP port_unreachable" in as_table.stdout


@pytest.mark.parametrize(("url", "part"), [
    ("stamp://127.0.0.1?rate=fast", "rate"),
    ("stamp://?rate=2M", "host"),
    ("stamp://127.0.0.1:0", "port"),
    ("stamp://127.0.0.1?colour=blue", "parameter 'colour'"),
    ("stamp://127.0.0.1?duration=10m", "duration"),
    ("stamp://127.0.0.1/path", "path"),
])
def test_a_bad_url_is_a_usage_error_naming_the_part(url: str, part: str) -> None:
    result = probe(url)
    assert result.returncode == exits.USAGE
    assert result.stderr.startswith(f"bridgemon probe: stamp URL {url!r}: {part}"), \
        result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("option", [["--count", "3"], ["--timeout", "2"], ["--insecure"]])
def test_options_of_other_checks_are_refused(option: list[str]) -> None:
    result = probe("stamp://127.0.0.1", *option)
    assert result.returncode == exits.USAGE
    assert f"{option[0]} does not apply to stamp://" in result.stderr
