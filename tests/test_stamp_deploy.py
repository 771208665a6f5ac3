"""The reflector's systemd unit (deploy/systemd/bridgemon-reflect.service): what it grants,
systemd-analyze's verdict on it, and the reflector run with exactly its privileges.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridgemon.stamp import TrainSpec, judge, run_train
from tests.conftest import REPO, needs_root

UNIT = REPO / "deploy" / "systemd" / "bridgemon-reflect.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_unit_grants_cap_net_bind_service_and_nothing_else() -> None:
    service = unit()["Service"]
    assert service["DynamicUser"] == "yes" and service["NoNewPrivileges"] == "yes"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert "PrivateUsers" not in service  # a namespaced capability binds nothing here
    argv = service["ExecStart"].split()
    assert argv[:2] == ["/opt/bridgemon/bin/bridgemon", "reflect"]
    assert argv[argv.index("--listen") + 1] == "0.0.0.0:862"
    allowed = argv[argv.index("--allow") + 1]
    # The kernel-side filter names the same network as the reflector's own.
    assert service["IPAddressDeny"] == "any"
    assert allowed in service["IPAddressAllow"].split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify_and_security(tmp_path: Path) -> None:
    bridgemon = Path(sys.executable).parent / "bridgemon"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/bridgemon/bin/bridgemon", str(bridgemon))
    path = tmp_path / "bridgemon-reflect.service"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # Exposure (0 safe … 10 exposed) times ten: at most 2.0, "OK".
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_reflector_runs_with_only_the_units_privileges() -> None:
    """As an unprivileged user holding only the unit's capabilities, the reflector binds
    port 862 (on a loopback address) and answers a train."""
    caps = unit()["Service"]["AmbientCapabilities"].lower().split()
    names = ",".join(f"+{cap.removeprefix('cap_')}" for cap in caps)
    proc = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         f"--inh-caps=-all,{names}", f"--ambient-caps=-all,{names}",
         f"--bounding-set=-all,{names}", "--no-new-privs",
         sys.executable, "-m", "bridgemon.stamp.reflector", "--listen", "127.0.0.86:862",
         "--allow", "127.0.0.0/8", "--ready"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            pytest.skip(f"cannot run the package as nobody here: {proc.stderr.read()[-300:]}")
        assert line.strip() == "ready 127.0.0.86:862"
        status = Path(f"/proc/{proc.pid}/status").read_text()
        effective = int(next(row for row in status.splitlines()
                             if row.startswith("CapEff:")).split()[1], 16)
        assert effective == 1 << 10  # CAP_NET_BIND_SERVICE alone
        result = asyncio.run(run_train(TrainSpec("127.0.0.86", 862, duration=0.5, wait=0.5)))
        assert judge(result).state == "ready"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
