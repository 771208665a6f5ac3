"""Service checks in the inventory: layering, per-site overrides, and the errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgemon.config import ConfigError, parse_config
from bridgemon.specs import HttpSpec, SipSpec, TcpSpec

CODEC = '''
[profiles.codec.checks.sip]
type = "sip"
accept = [200, 404, 405, 501]
[profiles.codec.checks.h323]
type = "h323"
[profiles.codec.checks.web]
type = "https"
verify_tls = false
required = false

[[levels]]
id = "province"
profile = "codec"
[[levels]]
id = "commune"
'''

SITE = '''
[[sites]]
id = "49"
name = "UBND tỉnh Quảng Nam"
level = "province"
address = "127.0.0.1"
'''


def load(text: str):  # type: ignore[no-untyped-def]
    return parse_config(text, Path("codec.toml"))


def test_profile_checks_become_specs_with_defaults() -> None:
    site = load(CODEC + SITE).inventory.sites["49"]
    sip, h323, web = site.checks
    assert sip == SipSpec(name="sip", transport="udp", accept=(200, 404, 405, 501))
    assert h323 == TcpSpec(name="h323", port=1720, kind="h323")
    assert web == HttpSpec(name="web", scheme="https", verify_tls=False, required=False)
    assert site.longest_probe == 5.0  # the https timeout is longer than the ICMP burst


def test_a_site_overrides_adds_and_disables_checks() -> None:
    site = load(CODEC + SITE + '''
[sites.checks.web]
path = "/api/status"
expect_status = [200, 401]
[sites.checks.h323]
enabled = false
[sites.checks.sips]
type = "sips"
port = 5061
''').inventory.sites["49"]
    names = [check.name for check in site.checks]
    assert names == ["sip", "web", "sips"]
    web = site.checks[1]
    assert isinstance(web, HttpSpec) and web.path == "/api/status"
    assert web.expect_status == (200, 401) and web.verify_tls is False  # kept from the profile
    sips = site.checks[2]
    assert isinstance(sips, SipSpec) and sips.transport == "tls" and sips.port == 5061


def test_checks_of_the_default_profile_reach_every_profile() -> None:
    config = load('''
[profiles.default.checks.ping-web]
type = "http"
port = 8080
''' + CODEC + SITE)
    assert [c.name for c in config.inventory.sites["49"].checks] == [
        "ping-web", "sip", "h323", "web"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[profiles.p.checks.x]\ntype = "tcp"\n', "codec.toml:1: profiles.p.checks.x: "
                                                   "a tcp check needs a port"),
        ('[profiles.p.checks.x]\ntype = "sip"\npath = "/"\n',
         "codec.toml:3: profiles.p.checks.x.path: path does not apply to a sip check"),
        ('[profiles.p.checks.x]\ntype = "gopher"\n', "codec.toml:2: profiles.p.checks.x.type"),
        ('[profiles.p.checks.x]\ntype = "h323"\ntimeout = "45s"\n',
         "timeout 45 s is not shorter than the 30 s interval"),
        ('[profiles.p.checks.Bad]\ntype = "h323"\n', "check name 'Bad' must match"),
        ('[profiles.p.checks.x]\ntype = "http"\nexpect_status = [99]\n',
         "profiles.p.checks.x.expect_status"),
        ('[profiles.p.checks.x]\nport = 80\n', "check 'x' needs a type"),
    ],
)
def test_bad_checks_name_the_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text + SITE)
    assert expected in str(caught.value)
