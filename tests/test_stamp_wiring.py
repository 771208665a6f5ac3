"""A packet train as a check: ``type = "stamp"`` in a profile, its errors at load, off in
the rounds unless asked, run by test runs, and shown in their reports — against real
reflectors on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from bridgemon import exits
from bridgemon.config import parse_config
from bridgemon.inventory import Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.pinger import Pinger
from bridgemon.probes.site import probe_site
from bridgemon.specs import StampSpec
from bridgemon.stamp import Reflector
from tests.conftest import REPO, needs_root
from tests.helpers import config_errors, one_check_inventory
from tests.test_cli_reflect import HOST, reflecting

# 1 Mbit/s of 200-octet packets for half a second: 274 packets, light on a shared box.
LIGHT = 'rate = "1M"\nsize = 200\nduration = "500ms"\nwait = "500ms"\n'


def inventory(check: str, *, interval: str = "30s", site_extra: str = "") -> str:
    return one_check_inventory("video", check, address=HOST, interval=interval,
                               site_extra=site_extra)


def load(text: str) -> Site:
    return parse_config(text, Path("sites.toml")).inventory.sites["a"]


errors = config_errors


def test_a_stamp_check_becomes_a_spec_off_in_the_rounds() -> None:
    site = load(inventory('type = "stamp"\nport = 8620\nrate = "2M"\ndscp = "EF"\n'
                          'duration = "5s"\nreflector = "stateful"\nrequired = false\n'))
    (video,) = site.checks
    assert video == StampSpec(name="video", port=8620, rate_bps=2_000_000.0, dscp=46,
                              duration=5.0, reflector="stateful", required=False)
    assert video.rounds is False and video.size == 1200 and video.wait == 1.0
    # Not run in the rounds: it does not lengthen them (nor the time before "stale").
    assert site.longest_probe == site.icmp.duration
    every_round = load(inventory('type = "stamp"\nduration = "5s"\nrounds = true\n'))
    assert every_round.longest_probe == 5.0 + 1.0 + 5.0


@pytest.mark.parametrize(("check", "line", "message"), [
    ('type = "stamp"\nrate = "fast"', 12, "profiles.codec.checks.video.rate: bad rate 'fast'"),
    ('type = "stamp"\ndscp = "AF99"', 12, "profiles.codec.checks.video.dscp: bad DSCP 'AF99'"),
    ('type = "stamp"\nreflector = "maybe"', 12, "profiles.codec.checks.video.reflector"),
    ('type = "stamp"\nduration = "2m"', 12,
     "profiles.codec.checks.video.duration: stamp train: duration 120.0 s"),
    ('type = "stamp"\nsize = 10', 12,
     "profiles.codec.checks.video.size: stamp train: size 10"),
    ('type = "stamp"\nrate = "8k"\nsize = 1200\nduration = "1s"', 14,
     "profiles.codec.checks.video.duration: stamp train: duration: a 8 kbit/s train"),
    ('type = "stamp"\ntimeout = "3s"', 12,
     "profiles.codec.checks.video.timeout: timeout does not apply to a stamp check"),
])
def test_a_bad_train_is_an_error_naming_its_line(check: str, line: int, message: str) -> None:
    found = errors(inventory(check))
    assert any(issue.startswith(f"sites.toml:{line}: {message}") for issue in found), found


def test_a_train_in_the_rounds_must_end_within_the_interval() -> None:
    found = errors(inventory('type = "stamp"\nduration = "10s"\nrounds = true\n',
                             interval="15s"))
    assert any("timeout 16 s is not shorter than the 15 s interval" in issue
               for issue in found), found
    # The same train for test runs only: the interval does not concern it.
    assert load(inventory('type = "stamp"\nduration = "10s"\n', interval="15s")).checks


def test_rounds_skip_the_train_and_test_runs_run_it() -> None:
    async def main() -> tuple[list[str], list[str], dict[str, object]]:
        async with Reflector([(HOST, 0)]) as reflector:
            port = reflector.addresses[0][1]
            site = load(inventory(f'type = "stamp"\nport = {port}\n{LIGHT}'))
            ctx = ProbeContext(pinger=Pinger("auto"))
            try:
                # ICMP is answered or not (no privileges): the train is what is looked at.
                in_round = await probe_site(site, ctx)
                in_test = await probe_site(site, ctx, trains=True)
            finally:
                ctx.pinger.close()
        train = in_test.result("video")
        assert train is not None
        return ([r.check for r in in_round.results], [r.check for r in in_test.results],
                {"ok": train.ok, "kind": train.kind, **train.details})

    in_round, in_test, train = asyncio.run(main())
    assert in_round == ["icmp"]
    assert in_test == ["icmp", "video"]
    assert train["ok"] is True and train["kind"] == "stamp" and train["state"] == "ready"
    assert train["sent"] == train["planned"] == 274


def test_a_train_marked_for_the_rounds_runs_in_them() -> None:
    async def main() -> list[str]:
        async with Reflector([(HOST, 0)]) as reflector:
            port = reflector.addresses[0][1]
            site = load(inventory(f'type = "stamp"\nport = {port}\nrounds = true\n{LIGHT}'))
            ctx = ProbeContext(pinger=Pinger("auto"))
            try:
                return [r.check for r in (await probe_site(site, ctx)).results]
            finally:
                ctx.pinger.close()

    assert asyncio.run(main()) == ["icmp", "video"]


@needs_root
def test_bridgemon_test_runs_the_trains_and_reports_them(tmp_path: Path) -> None:
    with reflecting() as (port, _proc):
        config = tmp_path / "sites.toml"
        config.write_text(inventory(
            f'type = "stamp"\nport = {port}\n{LIGHT}',
            site_extra='''
[[sites]]
id = "b"
name = "Điểm cầu B"
level = "xa"
address = "127.0.0.2"
checks.video = { port = 9 }
'''), encoding="utf-8")

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bridgemon", "-c", str(config), "test", "--count",
                 "2", "--no-history", *args],
                capture_output=True, text=True, timeout=120, cwd=REPO,
                env={**os.environ, "STATE_DIRECTORY": str(tmp_path), "COLUMNS": "200"},
            )  # fmt: skip

        as_json = run("--format", "json")
        as_table = run("--format", "table")
    assert as_json.returncode == exits.FAIL, as_json.stderr  # site b has no reflector
    report = json.loads(as_json.stdout)
    schema = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, schema)
    sites = {site["id"]: site for site in report["sites"]}
    assert sites["a"]["verdict"] == "ready"
    (train,) = [check for check in sites["a"]["checks"] if check["type"] == "stamp"]
    assert (train["name"], train["ok"], train["state"], train["target"]) == \
        ("video", True, "ready", f"{HOST}:{port}")
    assert train["round_trip"]["received"] == train["sent"] == 274
    assert train["downlink"]["loss_ratio"] == 0.0
    assert sites["b"]["verdict"] == "not_ready"
    assert len(sites["b"]["reasons"]) == 1
    assert "no STAMP reflector answers at 127.0.0.2:9" in sites["b"]["reasons"][0]
    assert "kiểm tra video lỗi: không có reflector STAMP trả lời tại 127.0.0.2:9" in \
        sites["b"]["reasons_vi"][0]
    assert as_table.returncode == exits.FAIL
    # The reasons column wraps: its first words, and the port the train went to.
    assert "kiểm tra video lỗi: không có" in as_table.stdout
    assert "127.0.0.2:9" in as_table.stdout
