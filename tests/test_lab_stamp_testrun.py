"""Issue 12 end to end in the lab: ``bridgemon test`` over lab sites with a ``type =
"stamp"`` and a ``type = "mtu"`` check in their profile. A clean site passes both; a site
whose path MTU is 1400 fails the test run on the MTU check, the reason in words; sites
capped at 1 Mbit/s one way fail the 2 Mbit/s train with the direction named. And
``bridgemon probe mtu://`` says "fragmentation needed, path MTU 1400" with exit 1.

Under the lab lock only (``flock /tmp/bridgemon-lab.lock .venv/bin/python -m pytest
tests/test_lab_stamp_testrun.py``); a lab of its own name and range (bmstamp2,
198.19.72.0/24), so it never touches another test's lab. Traffic goes only to that range.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bridgemon import exits
from bridgemon.lab import Lab
from bridgemon.report import render
from tests.conftest import REPO

pytestmark = pytest.mark.lab

NAME = "bmstamp2"
NET, HOST_ADDR, LAB_ADDR = "198.19.72.0/24", "198.19.249.2", "198.19.249.1"
CLEAN, MTU_1400, CAP_DOWN, CAP_UP = "198.19.72.1", "198.19.72.2", "198.19.72.3", "198.19.72.4"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}

INVENTORY = f'''
[monitor]
listen = "127.0.0.1:9"

[profiles.default.icmp]
count = 3
spacing = "100ms"
timeout = "1s"

[profiles.default.checks.video]
type = "stamp"
rate = "2M"
size = 1200
duration = "3s"
wait = "1s"

[profiles.default.checks.mtu]
type = "mtu"
size = 1472

[[levels]]
id = "xa"
name = "Cấp xã"

[[sites]]
id = "sach"
name = "Xã Sạch Sẽ"
level = "xa"
address = "{CLEAN}"

[[sites]]
id = "vpn"
name = "Xã Qua VPN"
level = "xa"
address = "{MTU_1400}"

[[sites]]
id = "xuong"
name = "Xã Chiều Xuống 1M"
level = "xa"
address = "{CAP_DOWN}"

[[sites]]
id = "len"
name = "Xã Chiều Lên 1M"
level = "xa"
address = "{CAP_UP}"
'''


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    ok, reason = Lab.available()
    if not ok:
        pytest.skip(f"lab unavailable: {reason}")
    with Lab(NAME, net=NET, host_addr=HOST_ADDR, lab_addr=LAB_ADDR, wait=60) as running:
        argv = [sys.executable, "-m", "bridgemon.stamp.reflector", "--listen", "0.0.0.0:862",
                "--ready"]
        proc = running.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, env=ENV)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready 0.0.0.0:862")
        running.impair(MTU_1400, mtu=1400)
        running.impair(CAP_DOWN, rate_bps=1e6)
        running.impair(CAP_UP, return_rate_bps=1e6)
        yield running


def bridgemon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridgemon", *args], capture_output=True,
                          text=True, timeout=180, cwd=cwd,
                          env={**ENV, "STATE_DIRECTORY": str(cwd)})


@pytest.fixture(scope="module")
def report(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("stamp-testrun")
    (tmp / "sites.toml").write_text(INVENTORY, encoding="utf-8")
    run = bridgemon("-c", str(tmp / "sites.toml"), "test", "--count", "5", "--no-history",
                    "--format", "json", cwd=tmp)
    assert run.returncode == exits.FAIL, run.stderr  # three sites not ready
    document: dict[str, Any] = json.loads(run.stdout)
    schema = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, schema)
    return document


def site(report: dict[str, Any], site_id: str) -> dict[str, Any]:
    return next(s for s in report["sites"] if s["id"] == site_id)


def check(report: dict[str, Any], site_id: str, kind: str) -> dict[str, Any]:
    return next(c for c in site(report, site_id)["checks"] if c["type"] == kind)


def test_a_clean_site_passes_the_train_and_the_mtu_check(report: dict[str, Any]) -> None:
    clean = site(report, "sach")
    assert clean["verdict"] == "ready", clean["reasons"]
    train, mtu = check(report, "sach", "stamp"), check(report, "sach", "mtu")
    assert (train["ok"], train["state"], train["reflector_mode"]) == (True, "ready", "stateful")
    assert train["downlink"]["loss_ratio"] == train["uplink"]["loss_ratio"] == 0.0
    assert (mtu["ok"], mtu["outcome"], mtu["packet_size"]) == (True, "ok", 1500)


def test_a_site_with_mtu_1400_fails_the_test_run_on_the_mtu_check(
        report: dict[str, Any]) -> None:
    vpn = site(report, "vpn")
    assert vpn["verdict"] == "not_ready"
    mtu = check(report, "vpn", "mtu")
    assert (mtu["ok"], mtu["outcome"], mtu["mtu"], mtu["state"]) == \
        (False, "frag_needed", 1400, "not_ready")
    assert "fragmentation needed, path MTU 1400" in mtu["reason"]
    # The reason in words, in the site's reasons in both languages.
    assert any("fragmentation needed, path MTU 1400" in r for r in vpn["reasons"]), \
        vpn["reasons"]
    assert any("cần phân mảnh, MTU đường truyền 1400" in r for r in vpn["reasons_vi"]), \
        vpn["reasons_vi"]
    # Its 1228-octet train packets fit: the train passes, the MTU check is what fails.
    assert check(report, "vpn", "stamp")["ok"] is True


@pytest.mark.parametrize(("site_id", "direction", "vi"), [
    ("xuong", "downlink", "chiều xuống (downlink)"),
    ("len", "uplink", "chiều lên (uplink)"),
])
def test_a_1_mbit_site_fails_the_2_mbit_train_naming_the_direction(
        report: dict[str, Any], site_id: str, direction: str, vi: str) -> None:
    capped = site(report, site_id)
    assert capped["verdict"] == "not_ready"
    train = check(report, site_id, "stamp")
    assert (train["ok"], train["state"]) == (False, "not_ready")
    assert train[direction]["loss_ratio"] == pytest.approx(0.5, abs=0.1)
    assert train[direction]["carried_bps"] == pytest.approx(1e6, rel=0.15)
    named = {r["direction"] for r in train["reasons"] if r["code"] in ("stamp_loss",
                                                                       "stamp_rate")}
    assert named == {direction}, train["reasons"]
    assert any("luồng 2 Mbit/s mất" in r and vi in r for r in capped["reasons_vi"]), \
        capped["reasons_vi"]
    assert check(report, site_id, "mtu")["ok"] is True  # ping-sized and 1500 B pass


def test_every_report_format_shows_the_path_tests(report: dict[str, Any]) -> None:
    table = render(report, "table")
    assert "cần phân mảnh, MTU đường truyền 1400" in " ".join(table.split())
    assert "Kiểm tra đường truyền bằng luồng STAMP" in table
    html = render(report, "html")
    assert 'class="sites path trains"' in html and 'class="sites path mtus"' in html
    csv_text = render(report, "csv")
    assert "frag_needed" in csv_text


def test_probe_mtu_says_fragmentation_needed_with_exit_1(lab: Lab, tmp_path: Path) -> None:
    failed = bridgemon("probe", "--format", "json", f"mtu://{MTU_1400}?size=1472",
                       cwd=tmp_path)
    assert failed.returncode == exits.FAIL, failed.stderr
    view = json.loads(failed.stdout)
    assert (view["outcome"], view["mtu"], view["ok"]) == ("frag_needed", 1400, False)
    assert "cần phân mảnh, MTU đường truyền 1400" in view["reason_vi"]
    table = bridgemon("probe", f"mtu://{MTU_1400}", cwd=tmp_path)
    assert table.returncode == exits.FAIL
    assert "fragmentation needed, path MTU 1400" in " ".join(table.stdout.split())
    fits = bridgemon("probe", f"mtu://{MTU_1400}?size=1372", cwd=tmp_path)
    assert fits.returncode == exits.OK, fits.stdout + fits.stderr


def test_concurrent_mtu_checks_keep_their_own_icmp_errors(lab: Lab) -> None:
    # Every raw ICMP socket is handed every ICMP error: the clean site's prober must not
    # take the "fragmentation needed" meant for the VPN site's echo (same sequence numbers).
    import asyncio

    from bridgemon.stamp import probe_pmtu

    async def both() -> list[Any]:
        return list(await asyncio.gather(*(probe_pmtu(address, mode="raw")
                                           for address in (CLEAN, MTU_1400, CLEAN, CAP_UP))))

    clean, vpn, again, capped = asyncio.run(both())
    assert (vpn.outcome, vpn.mtu) == ("frag_needed", 1400)
    assert [r.outcome for r in (clean, again, capped)] == ["ok", "ok", "ok"]
