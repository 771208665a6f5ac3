"""The command line as a user runs it: real processes, exit codes, signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, needs_root
from tests.helpers import get, get_json, scrape, value, wait_for_sync, write_inventory

BRIDGEMON = [sys.executable, "-m", "bridgemon"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BRIDGEMON, *args], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_check_config_accepts_the_shipped_inventory() -> None:
    result = run("check-config")
    assert result.returncode == 0, result.stderr
    assert "260 sites" in result.stdout and "241 commune" in result.stdout


def test_check_config_takes_the_path_from_the_environment() -> None:
    result = run("check-config", env={"BRIDGEMON_CONFIG": "examples/danang-2025.toml"})
    assert result.returncode == 0, result.stderr
    assert "95 sites" in result.stdout and "0 district" not in result.stdout


def test_check_config_reports_every_error_with_path_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[monitor]\ninterval = "soon"\n\n'
        '[[sites]]\nid = "49"\nname = "UBND tỉnh"\nlevel = "province"\naddress = "127.0.0.1"\n\n'
        '[[sites]]\nid = "49"\nname = "Bản sao"\nlevel = "province"\naddress = "127.0.0.2"\n',
        encoding="utf-8",
    )
    result = run("-c", str(bad), "check-config")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert f"{bad}:2: monitor.interval: bad duration 'soon'" in lines[0]
    assert lines[1].startswith(f"{bad}:11: sites[1].id: duplicate site id '49' (first at line 5)")
    assert "2 errors" in lines[-1]


def test_missing_config_is_a_usage_error(tmp_path: Path) -> None:
    result = run("-c", str(tmp_path / "nope.toml"), "check-config")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_sites_prints_the_tree_with_names() -> None:
    result = run("sites", "--select", "under:516")
    assert result.returncode == 0, result.stderr
    assert "Huyện Nam Trà My" in result.stdout and "Xã Trà Mai" in result.stdout
    assert "Tam Kỳ" not in result.stdout
    as_json = json.loads(run("sites", "--format", "json", "--select", "level:district").stdout)
    assert len(as_json) == 18 and all(row["parent"] == "49" for row in as_json)
    bad = run("sites", "--select", "under:nowhere")
    assert bad.returncode == 2 and "nowhere" in bad.stderr


@needs_root
def test_run_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    sites = [
        {"id": "48", "name": "UBND thành phố Đà Nẵng", "level": "province",
         "address": "127.61.0.1"},
        {"id": "20242", "name": "Phường Hải Châu", "level": "commune", "parent": "48",
         "address": "127.61.1.10"},
    ]
    path = write_inventory(tmp_path / "sites.toml", sites, port=port,
                           levels=["province", "commune"])
    process = subprocess.Popen(
        [*BRIDGEMON, "-c", str(path), "run"], cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_sync(lambda: get_json(url + "/api/v1/sites")["summary"]["ready"] == 2, 20,
                      "both sites ready")
        sites.append({"id": "20257", "name": "Phường Hòa Cường", "level": "commune",
                      "parent": "48", "address": "127.61.1.11"})
        write_inventory(path, sites, port=port, levels=["province", "commune"])
        process.send_signal(signal.SIGHUP)
        wait_for_sync(lambda: get_json(url + "/api/v1/sites")["summary"]["ready"] == 3, 20,
                      "the added site ready after SIGHUP")
        path.write_text("[[sites]]\nid = 'broken", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        wait_for_sync(
            lambda: value(scrape(url + "/metrics"),
                          "bridgemon_config_last_reload_successful") == 0, 10, "a rejected reload"
        )
        assert get(url + "/healthz")[0] == 200
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert f"{path}:2: TOML syntax: Expected" in output
    assert "keeping the running configuration (3 sites)" in output
    assert "Traceback" not in output


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_unresolvable_name_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    # Resolve against a resolver on loopback that does not exist, inside a private mount
    # namespace, so the lookup fails here and no query ever leaves the machine.
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.153\noptions timeout:1 attempts:1\n")
    port = free_port()
    path = write_inventory(
        tmp_path / "sites.toml",
        [{"id": "49", "name": "UBND tỉnh", "level": "province", "address": "127.62.0.1"},
         {"id": "502", "name": "Thành phố Tam Kỳ", "level": "district", "parent": "49",
          "address": "diem-cau-tam-ky.example"}],
        port=port,
    )
    command = " ".join([*BRIDGEMON, "-c", str(path), "run"])
    process = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c",
         f"mount --bind {resolv} /etc/resolv.conf && exec {command}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        def judged() -> bool:
            return bool(get_json(url + "/api/v1/sites/502")["verdict"] == "not_ready")

        wait_for_sync(judged, 20, "the unresolvable site judged")
        site = get_json(url + "/api/v1/sites/502")
        assert "DNS lookup of diem-cau-tam-ky.example" in site["reasons"][0]
        assert get_json(url + "/api/v1/sites/49")["verdict"] == "ready"
    finally:
        process.terminate()
        process.communicate(timeout=15)
    time.sleep(0)


@needs_root
def test_probe_passes_fails_and_refuses_bad_urls() -> None:
    ok = run("probe", "icmp://127.0.0.1", "--count", "3", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    view = json.loads(ok.stdout)
    assert view["type"] == "icmp" and view["sent"] == 3 and view["received"] == 3
    refused = run("probe", "tcp://127.0.0.1:1", "--format", "json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["reason"] == "TCP 1: connection refused"
    h323 = run("probe", "h323://127.0.0.1")
    assert h323.returncode == 1 and "H.323 1720" in h323.stdout
    for bad in ("gopher://x", "tcp://127.0.0.1", "sip://127.0.0.1;transport=sctp"):
        result = run("probe", bad)
        assert result.returncode == 2 and result.stderr.startswith("bridgemon probe:")
    assert run("probe", "tcp://127.0.0.1:1", "--count", "3").returncode == 2
