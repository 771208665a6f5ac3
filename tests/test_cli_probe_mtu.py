"""``bridgemon probe 'mtu://HOST?size=1472'``: the path MTU check from the command line,
its outcome as the exit status (0 pass, 1 fail, 2 bad URL) and its fields in the JSON.
Loopback's MTU is 65536, so every size passes here; "fragmentation needed" and the black
hole are the lab's (tests/test_lab_stamp_testrun.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from bridgemon import exits
from bridgemon.cli_probe_url import parse_probe_url
from bridgemon.specs import MtuSpec
from tests.conftest import REPO, needs_root
from tests.test_cli_reflect import ENV

HOST = "127.0.0.1"


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridgemon", "probe", *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**ENV, "COLUMNS": "200"})


@pytest.mark.parametrize(("url", "size"), [
    ("mtu://127.0.0.1", 1472),
    ("mtu://127.0.0.1?size=1372", 1372),
    ("MTU://127.0.0.1/?size=57", 57),
    ("mtu://127.0.0.1?size=65507", 65507),
    ("mtu://site-a.example?size=1472", 1472),
])
def test_an_mtu_url_is_the_checks_spec(url: str, size: int) -> None:
    kind, host, spec = parse_probe_url(url)
    assert kind == "mtu" and host in ("127.0.0.1", "site-a.example")
    assert spec == MtuSpec(name="mtu", size=size)


@pytest.mark.parametrize(("url", "message"), [
    ("mtu://127.0.0.1:80", "the MTU check is ICMP, it has no port"),
    ("mtu://127.0.0.1?size=56", "size '56' must be 57-65507 octets"),
    ("mtu://127.0.0.1?size=65508", "size '65508' must be 57-65507"),
    ("mtu://127.0.0.1?size=big", "size 'big'"),
    ("mtu://127.0.0.1?size=", "size ''"),
    ("mtu://127.0.0.1?size", "size ''"),
    ("mtu://127.0.0.1?rate=2M", "unknown parameter 'rate'; only ?size=N"),
    ("mtu://127.0.0.1?size=1400&size=1472", "size is given twice"),
    ("mtu://127.0.0.1/path", "takes no path"),
    ("mtu://127.0.0.1#x", "takes no fragment"),
    ("mtu://[::1]", "IPv4 only"),
    ("mtu:127.0.0.1", "write it as mtu://HOST"),
    ("mtu://", "has no host"),
    ("mtu://10.0.0.256", "not a valid IPv4 address"),
])
def test_a_bad_mtu_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_probe_url(url)
    assert message in str(caught.value)


def test_a_bad_url_or_option_exits_2_with_the_reason() -> None:
    bad = probe("mtu://127.0.0.1?size=70000")
    assert bad.returncode == exits.USAGE and "size '70000' must be 57-65507" in bad.stderr
    assert bad.stdout == ""
    for option in (["--timeout", "3"], ["--count", "3"], ["--insecure"]):
        refused = probe("mtu://127.0.0.1", *option)
        assert refused.returncode == exits.USAGE, option
        assert "bridgemon probe:" in refused.stderr


@needs_root
@pytest.mark.parametrize("size", [1472, 65507])
def test_loopback_passes_with_the_checks_fields(size: int) -> None:
    as_json = probe(f"mtu://{HOST}?size={size}", "--format", "json")
    as_table = probe(f"mtu://{HOST}?size={size}")
    assert as_json.returncode == exits.OK, as_json.stderr
    view = json.loads(as_json.stdout)
    assert (view["type"], view["name"], view["target"], view["ok"], view["state"]) == \
        ("mtu", "mtu", HOST, True, "ready")
    assert (view["size"], view["packet_size"], view["outcome"]) == (size, size + 28, "ok")
    assert view["reason"] is None and view["echo_rtt_ms"] > 0
    # The JSON is a check of a test-run report, as the schema describes it.
    schema = json.loads((REPO / "docs" / "testrun.schema.json").read_text(encoding="utf-8"))
    checks = {"$ref": "#/$defs/check", "$defs": schema["$defs"]}
    jsonschema.validate(view, checks)
    assert as_table.returncode == exits.OK, as_table.stderr
    text = " ".join(as_table.stdout.split())
    assert "ĐẠT (pass)" in text and f"{size + 28} B ({size} B ICMP payload), DF" in text
