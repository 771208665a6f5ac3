"""The path MTU check as a check: ``type = "mtu"`` in a profile, its errors at load, off
in the rounds unless asked, run by test runs and shown in their reports — against
127.0.0.1 (loopback's MTU is 65536: every size the check accepts passes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bridgemon import exits, specs
from bridgemon.config import parse_config
from bridgemon.inventory import Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger
from bridgemon.probes.result import SiteRound
from bridgemon.probes.site import probe_site
from bridgemon.readiness import judge_own
from bridgemon.specs import MtuSpec
from bridgemon.stamp import pmtu
from bridgemon.stamp.pmtu_check import mtu_check
from bridgemon.verdicts import State
from tests.conftest import REPO, needs_root
from tests.helpers import config_errors, one_check_inventory

HOST = "127.0.0.1"


def inventory(check: str, *, interval: str = "30s", site_extra: str = "") -> str:
    return one_check_inventory("mtu", check, address=HOST, interval=interval,
                               site_extra=site_extra)


def load(text: str) -> Site:
    return parse_config(text, Path("sites.toml")).inventory.sites["a"]


errors = config_errors


def test_the_loader_bounds_are_the_probes() -> None:
    # specs.py keeps its own copy (the loader may not import the probes): they must agree,
    # or the loader would accept a size the probe refuses.
    assert specs.MTU_DEFAULT_SIZE == pmtu.DEFAULT_SIZE
    assert specs.MTU_MIN_SIZE == pmtu.SMALL_SIZE + 1
    assert specs.MTU_MAX_SIZE == pmtu.MAX_SIZE


def test_an_mtu_check_becomes_a_spec_off_in_the_rounds() -> None:
    site = load(inventory('type = "mtu"\n'))
    (mtu,) = site.checks
    assert mtu == MtuSpec(name="mtu", size=1472, rounds=False, required=True)
    assert site.longest_probe == site.icmp.duration
    optional = load(inventory('type = "mtu"\nsize = 1372\nrequired = false\nrounds = true\n'))
    assert optional.checks == (MtuSpec(name="mtu", size=1372, rounds=True, required=False),)
    # Two tries at full size, two small, six search steps of 1 s, and a name lookup.
    assert optional.longest_probe == 15.0


def test_a_site_overrides_the_size() -> None:
    site = load(inventory('type = "mtu"\n', site_extra="checks.mtu = { size = 1372 }\n"))
    assert site.checks == (MtuSpec(name="mtu", size=1372),)


@pytest.mark.parametrize(("check", "line", "message"), [
    # Above loopback's MTU (and any IPv4 packet's size): refused here, not probed.
    ('type = "mtu"\nsize = 65508', 12,
     "profiles.codec.checks.mtu.size: mtu check: size 65508 must be 57-65507 octets"),
    ('type = "mtu"\nsize = 56', 12,
     "profiles.codec.checks.mtu.size: mtu check: size 56 must be 57-65507"),
    ('type = "mtu"\nsize = -1', 12, "profiles.codec.checks.mtu.size: mtu check: size -1"),
    ('type = "mtu"\nsize = "big"', 12, "profiles.codec.checks.mtu.size"),
    ('type = "mtu"\nport = 80', 12,
     "profiles.codec.checks.mtu.port: port does not apply to a mtu check"),
    ('type = "mtu"\ntimeout = "3s"', 12,
     "profiles.codec.checks.mtu.timeout: timeout does not apply to a mtu check"),
    ('type = "mtu"\nrate = "2M"', 12,
     "profiles.codec.checks.mtu.rate: rate does not apply to a mtu check"),
    ('type = "mtu"\nsize = 1472.5', 12, "profiles.codec.checks.mtu.size"),
    ('type = "mtu"\nrounds = 2', 12, "profiles.codec.checks.mtu.rounds"),
])
def test_a_bad_mtu_check_is_an_error_naming_its_line(check: str, line: int,
                                                     message: str) -> None:
    found = errors(inventory(check))
    assert any(issue.startswith(f"sites.toml:{line}: {message}") for issue in found), found


def test_a_bad_size_in_a_site_override_names_the_sites_line() -> None:
    found = errors(inventory('type = "mtu"\n', site_extra="checks.mtu = { size = 70000 }\n"))
    assert any(issue.startswith("sites.toml:") and "sites[0].checks.mtu.size: mtu check: "
               "size 70000" in issue for issue in found), found


def test_an_mtu_check_in_the_rounds_must_end_within_the_interval() -> None:
    found = errors(inventory('type = "mtu"\nrounds = true\n', interval="15s"))
    assert any("timeout 15 s is not shorter than the 15 s interval" in issue
               for issue in found), found
    assert load(inventory('type = "mtu"\n', interval="15s")).checks


def _probe(site: Site, *, trains: bool) -> SiteRound:
    async def main() -> SiteRound:
        ctx = ProbeContext(pinger=Pinger("auto"))
        try:
            return await probe_site(site, ctx, trains=trains)
        finally:
            ctx.pinger.close()

    return asyncio.run(main())


@needs_root
@pytest.mark.parametrize("size", [1472, 65507])
def test_rounds_skip_the_check_and_test_runs_pass_it_on_loopback(size: int) -> None:
    site = load(inventory(f'type = "mtu"\nsize = {size}\n'))
    assert [r.check for r in _probe(site, trains=False).results] == ["icmp"]
    in_test = _probe(site, trains=True)
    assert [r.check for r in in_test.results] == ["icmp", "mtu"]
    mtu = in_test.result("mtu")
    assert mtu is not None
    assert (mtu.ok, mtu.kind, mtu.target, mtu.reason) == (True, "mtu", HOST, None)
    assert mtu.details["outcome"] == "ok" and mtu.details["state"] == "ready"
    assert mtu.details["packet_size"] == size + 28
    assert mtu.details["probes"] == 1
    verdict = judge_own(site, [in_test], in_test.started_at)
    assert not any(reason.code == "check:mtu" for reason in verdict.reasons)


@needs_root
def test_an_mtu_check_marked_for_the_rounds_runs_in_them() -> None:
    site = load(inventory('type = "mtu"\nrounds = true\n'))
    assert [r.check for r in _probe(site, trains=False).results] == ["icmp", "mtu"]


def test_a_refused_size_is_a_failed_check_with_its_reason_in_both_languages() -> None:
    # What a PPPoE line answers; loopback cannot: the mapping is checked on the probe's
    # own result.
    result = pmtu.PmtuResult(address="10.1.2.3", size=1472, outcome="frag_needed", mtu=1492,
                             largest_ok=None, smallest_lost=None, reporter="10.1.2.1",
                             rtt=None, mode="raw", probes=1)
    check = mtu_check(result, name="mtu", started_at=1.0, duration=0.1)
    assert (check.ok, check.kind, check.target) == (False, "mtu", "10.1.2.3")
    assert check.reason is not None and "fragmentation needed, path MTU 1492" in check.reason
    assert "cần phân mảnh, MTU đường truyền 1492" in check.details["reason_vi"]
    assert "reason" not in check.details  # the report's reason is the check's own
    assert check.details["state"] == "not_ready"
    json.dumps(check.details)  # the report and the API serialise it
    # Readiness words the site's reason in Vietnamese from it.
    site = load(inventory('type = "mtu"\n'))
    verdict = judge_own(site, [SiteRound(1.0, (check,))], 2.0)
    (reason,) = [reason for reason in verdict.reasons if reason.code == "check:mtu"]
    assert reason.severity == State.NOT_READY
    assert reason.vi.startswith("kiểm tra mtu lỗi: cần phân mảnh, MTU đường truyền 1492: "
                                "gói 1500 B có cờ DF bị từ chối bởi 10.1.2.1"), reason.vi


@needs_root
def test_bridgemon_test_runs_the_mtu_check_and_reports_it(tmp_path: Path) -> None:
    config = tmp_path / "sites.toml"
    config.write_text(inventory('type = "mtu"\n', site_extra='''
[[sites]]
id = "b"
name = "Điểm cầu B"
level = "xa"
address = "127.0.0.2"
checks.mtu = { size = 9000 }
'''), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "bridgemon", "-c", str(config), "test", "--count", "2",
         "--no-history", "--format", "json"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path), "COLUMNS": "200"},
    )
    assert run.returncode == exits.OK, run.stderr
    report = json.loads(run.stdout)
    schema = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, schema)
    checks = {site["id"]: [c for c in site["checks"] if c["type"] == "mtu"]
              for site in report["sites"]}
    assert [(c["name"], c["ok"], c["outcome"], c["packet_size"]) for c in checks["a"]] == \
        [("mtu", True, "ok", 1500)]
    assert [(c["target"], c["ok"], c["packet_size"]) for c in checks["b"]] == \
        [("127.0.0.2", True, 9028)]
    assert {site["verdict"] for site in report["sites"]} == {State.READY.value}


# -- the default path MTU check of test runs ---------------------------------------------

PLAIN = '''
[profiles.default.icmp]
count = 2
spacing = "50ms"
timeout = "500ms"

[[levels]]
id = "xa"

[[sites]]
id = "a"
name = "Điểm cầu A"
level = "xa"
address = "127.0.0.1"
'''


def test_test_runs_check_the_path_mtu_of_sites_without_an_mtu_check_unless_turned_off(
) -> None:
    from bridgemon.specs import IcmpSpec
    from bridgemon.testrun.plan import plan_with

    for extra, expected in (("", [("mtu", 1472, False)]),
                            ("[test]\npath_mtu = 1372\n", [("mtu", 1372, False)]),
                            ("[test]\npath_mtu = 0\n", [])):
        config = parse_config(extra + PLAIN, Path("sites.toml"))
        plan = plan_with(config.test, config.inventory, trigger="manual", operator="t")
        tested = plan.tested(config.inventory.sites["a"], IcmpSpec())
        assert [(c.name, c.size, c.required) for c in tested.checks
                if isinstance(c, MtuSpec)] == expected, extra
    # A profile's own mtu check is the one run: no second one added.
    config = parse_config(inventory('type = "mtu"\nsize = 1400\n'), Path("sites.toml"))
    plan = plan_with(config.test, config.inventory, trigger="manual", operator="t")
    tested = plan.tested(config.inventory.sites["a"], IcmpSpec())
    assert [(c.name, c.size, c.required) for c in tested.checks] == [("mtu", 1400, True)]


def test_path_mtu_in_the_test_section_is_checked_at_load() -> None:
    assert errors("[test]\npath_mtu = 20\n" + PLAIN) == [
        "sites.toml:2: test.path_mtu: path_mtu must be 0 (off) or 57-65507 ICMP payload "
        "octets (1472 fills a 1500-octet MTU)"]
    assert errors("[test]\npath_mtu = 70000\n" + PLAIN)[0].startswith(
        "sites.toml:2: test.path_mtu:")


def open_sockets() -> int:
    """Sockets this process holds open now (its descriptors that are sockets)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return count


@needs_root
def test_a_thousand_mtu_probes_at_once_beside_the_pinger_all_pass_on_one_socket() -> None:
    """A test run's MTU probes share one socket. With one socket each, the kernel copied
    every reply on the host to each of them: a 2,000-site test run took twice as long as
    without the check (12 s vs 5 s here), and once, on a loaded machine, 88 healthy sites
    were judged "does not answer ping even with small packets"."""
    async def run() -> tuple[list[pmtu.PmtuResult], int]:
        pinger = Pinger("raw")
        pinger.check()
        share = pmtu.PmtuSockets()
        try:
            addresses = [f"127.61.{i // 250}.{i % 250 + 1}" for i in range(1000)]
            # The test run's own pings, at the same time (its replies are everywhere).
            bursts = [pinger.burst(f"127.62.{i // 250}.{i % 250 + 1}", count=5,
                                   spacing=0.01, timeout=1.0) for i in range(1000)]
            probes = [pmtu.probe_pmtu(address, timeout=2.0, share=share)
                      for address in addresses]
            before = open_sockets()
            sockets_at_peak = 0

            async def watch() -> None:
                nonlocal sockets_at_peak
                for _ in range(20):
                    sockets_at_peak = max(sockets_at_peak, open_sockets() - before)
                    await asyncio.sleep(0.01)

            results = await asyncio.gather(*probes, *bursts, watch())
            return [r for r in results if isinstance(r, pmtu.PmtuResult)], sockets_at_peak
        finally:
            pinger.close()

    results, sockets = asyncio.run(run())  # sockets opened beside the pinger's, at most
    assert len(results) == 1000
    assert sorted({(r.outcome, r.probes) for r in results}) == [("ok", 1)]
    assert sockets == 1
