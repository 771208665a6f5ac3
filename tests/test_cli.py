"""The command line as a user runs it: real processes, exit codes, signals."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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


# --- data is printed as written, never as rich markup --------------------------------------

MARKUP_SITES = [
    {"id": "49", "name": "UBND [/] tỉnh", "level": "province", "address": "127.0.0.1"},
    {"id": "502", "name": "[bold]Tam Kỳ[/bold] :thumbs_up: [link=x]", "level": "district",
     "parent": "49", "address": "127.0.0.2"},
]


def test_sites_prints_markup_in_names_as_written(tmp_path: Path) -> None:
    (tmp_path / "[bold]").mkdir()
    path = write_inventory(tmp_path / "[bold]" / "sites.toml", MARKUP_SITES, port=free_port())
    result = run("sites", "-c", str(path), env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    assert "UBND [/] tỉnh (49," in result.stdout
    assert "[bold]Tam Kỳ[/bold] :thumbs_up: [link=x] (502," in result.stdout
    assert f"{path} — 2 sites" in result.stdout


@contextlib.contextmanager
def http_answering(status_line: bytes) -> Iterator[int]:
    """A loopback HTTP server answering every request with ``status_line``; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(status_line + b"\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
        thread.join(timeout=10)


def test_probe_prints_what_the_device_says_as_written() -> None:
    phrase = "Not [/]Found [bold]here[/bold] :warning:"  # ASCII: HTTP's is ISO-8859-1
    with http_answering(f"HTTP/1.1 200 {phrase}".encode()) as port:
        result = run("probe", f"http://127.0.0.1:{port}/", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert phrase in result.stdout
    assert f"http://127.0.0.1:{port}/ — ĐẠT (pass)" in result.stdout


# --- global options before or after the command -----------------------------------------


def test_global_options_are_taken_after_the_command_too(tmp_path: Path) -> None:
    danang = "examples/danang-2025.toml"
    for argv in (["check-config", "-c", danang], ["-c", danang, "check-config"],
                 ["check-config", "--config", danang, "--log-level", "debug"],
                 ["-c", danang, "check-config", "-c", danang]):  # the same twice is fine
        result = run(*argv)
        assert result.returncode == 0, (argv, result.stderr)
        assert "95 sites" in result.stdout, argv
    # `run -c FILE`: the file is the one read (and refused: it does not exist)
    missing = tmp_path / "nowhere.toml"
    result = run("run", "-c", str(missing), "--log-level", "error")
    assert result.returncode == 2 and f"{missing}:0: no such file" in result.stderr
    # an option not given after the command does not reset the one given before it, nor
    # the environment's default
    result = run("check-config", "--log-level", "warning",
                 env={"BRIDGEMON_CONFIG": danang})
    assert result.returncode == 0 and "95 sites" in result.stdout


def test_a_global_option_given_twice_differently_is_refused() -> None:
    result = run("-c", "config/sites.toml", "sites", "-c", "examples/danang-2025.toml")
    assert result.returncode == 2
    assert "--config given twice" in result.stderr
    assert "'config/sites.toml'" in result.stderr and "'examples/danang-2025.toml'" in result.stderr
    result = run("--log-level", "debug", "check-config", "--log-level", "error")
    assert result.returncode == 2 and "--log-level given twice" in result.stderr


# --- .ci/run -------------------------------------------------------------------------------


def test_ci_run_refuses_to_stop_a_servers_services(tmp_path: Path) -> None:
    """On a machine where prometheus already runs, .ci/run stops before touching anything.

    Stand-ins for systemctl (every service active) and apt-get (records that it ran and
    fails, so nothing after it could run even if the guard were missing)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "apt-get-ran"
    (bin_dir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\ntouch {ran}\nexit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(["bash", str(REPO / ".ci" / "run")], capture_output=True,
                            text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "prometheus is running here" in result.stderr and "CI machines" in result.stderr
    assert not ran.exists()
    # with CI set, the guard stands aside (and the stand-in apt-get stops the script)
    result = subprocess.run(["bash", str(REPO / ".ci" / "run")], capture_output=True,
                            text=True, timeout=60, env={**env, "CI": "1"}, cwd=tmp_path)
    assert result.returncode != 0 and ran.exists()
