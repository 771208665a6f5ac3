"""Service checks in the inventory: layering, per-site overrides, and the errors."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from bridgemon.config import Config, ConfigError, load_config, parse_config
from bridgemon.probes.http import site_url, split_url
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


# --------------------------------------------------------------------------- url, path, ca_file


def write_and_load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "etc" / "codec.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + SITE, encoding="utf-8")
    return load_config(path)


def check_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        write_and_load(tmp_path, text)
    prefix = f"{tmp_path / 'etc' / 'codec.toml'}:"
    lines = str(caught.value).splitlines()
    assert all(line.startswith(prefix) for line in lines)
    return [line.removeprefix(prefix) for line in lines]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ('url = "ftp://127.0.0.1/status"',
         "3: profiles.p.checks.x.url: url 'ftp://127.0.0.1/status' must start with http://"),
        ('url = "127.0.0.1/status"', "3: profiles.p.checks.x.url: url '127.0.0.1/status' must "
                                     "start with http://"),
        ('url = "http:///status"', "3: profiles.p.checks.x.url: url 'http:///status' needs a host"),
        ('url = "http://mcu.ubnd .vn/"', "3: profiles.p.checks.x.url: url 'http://mcu.ubnd .vn/' "
                                         "has spaces or control characters"),
        ('url = "http://127.0.0.1/a b"', "has spaces or control characters"),
        ('url = "http://127.0.0.1/a\\tb"', "url 'http://127.0.0.1/a\\tb' has spaces"),
        ('url = "http://127.0.0.1/\\r\\nX-Injected: 1"', "has spaces or control characters"),
        ('url = "http://127.0.0.1:99999/"', "url 'http://127.0.0.1:99999/': Port out of range"),
        ('url = "http://127.0.0.1:0/"', "bad port (a number 1-65535)"),
        ('url = "http://admin:secret@127.0.0.1/"', "user names and passwords are not supported"),
        ('url = "http://[::1/"', "url 'http://[::1/': Invalid IPv6 URL"),
        ('url = "http://điểm-cầu.vn/"', "needs a host: an IP address or a DNS name"),
        ('url = "https://127.0.0.1/"', "3: profiles.p.checks.x.url: url 'https://127.0.0.1/' "
                                       "does not match the type of the check (http)"),
        ('path = "status"', "3: profiles.p.checks.x.path: path 'status' must start with '/'"),
        ('path = "/trạng thái"', "path '/trạng thái' has spaces or control characters"),
        ('path = "/a\\u0085b"', "path '/a\\x85b' has spaces or control characters"),
        ('path = "/a\\u0000"', "path '/a\\x00' has spaces or control characters"),
    ],
)
def test_urls_and_paths_are_checked_at_load(tmp_path: Path, keys: str, expected: str) -> None:
    # Accepted before: the probe found out on every round (or sent the line breaks).
    lines = check_errors(tmp_path, f'[profiles.p.checks.x]\ntype = "http"\n{keys}\n')
    assert len(lines) == 1 and expected in lines[0], lines


@pytest.mark.parametrize(
    ("kind", "keys"),
    [
        ("http", 'url = "http://127.0.0.1:8080/api/status?full=1"'),
        ("https", 'url = "HTTPS://[::1]/"'),
        ("https", 'url = "https://mcu.ubnd.quangnam.gov.vn/trạng-thái"'),
        ("http", 'path = "/api/v1/status?site=49"'),
        ("http", 'path = "/trạng-thái"'),
    ],
)
def test_good_urls_and_paths(tmp_path: Path, kind: str, keys: str) -> None:
    (check,) = write_and_load(
        tmp_path, f'[profiles.default.checks.x]\ntype = "{kind}"\n{keys}\n'
    ).inventory.sites["49"].checks
    assert isinstance(check, HttpSpec)
    # what the loader accepts, the probe can request
    split_url(site_url("127.0.0.1", check))


def _ca(tmp_path: Path) -> Path:
    ca = trustme.CA()
    path = tmp_path / "etc" / "ca.pem"
    path.parent.mkdir(exist_ok=True)
    ca.cert_pem.write_to_path(str(path))
    return path


def test_a_relative_ca_file_is_found_next_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = _ca(tmp_path)
    monkeypatch.chdir("/")
    config = write_and_load(tmp_path, '[profiles.default.checks.web]\ntype = "https"\n'
                                      'ca_file = "ca.pem"\n'
                                      '[profiles.default.checks.sip]\ntype = "sips"\n'
                                      f'ca_file = "{ca}"\n')
    web, sip = config.inventory.sites["49"].checks
    assert web.ca_file == sip.ca_file == str(ca)  # absolute: the daemon's cwd does not matter


@pytest.mark.timeout(20)  # a FIFO once hung the loader, waiting for a writer
@pytest.mark.parametrize(
    ("name", "make", "problem"),
    [
        ("missing.pem", None, "no such file"),
        ("certs", lambda path: path.mkdir(), "is a directory, not a PEM file"),
        ("empty.pem", lambda path: path.write_bytes(b""), "holds no PEM CA certificate"),
        ("ca.der", lambda path: path.write_bytes(b"0\x82\x01\x0a" + bytes(300)),
         "holds no PEM CA certificate"),
        ("fifo.pem", lambda path: os.mkfifo(path), "is not a regular file"),
    ],
)
def test_a_ca_file_must_be_a_readable_pem_bundle(
    tmp_path: Path, name: str, make: Callable[[Path], object] | None, problem: str
) -> None:
    (tmp_path / "etc").mkdir()
    if make is not None:
        make(tmp_path / "etc" / name)
    lines = check_errors(tmp_path, f'[profiles.p.checks.web]\ntype = "https"\n'
                                   f'ca_file = "{name}"\n')
    assert len(lines) == 1
    assert lines[0].startswith(f"3: profiles.p.checks.web.ca_file: ca_file {name!r}: ")
    assert problem in lines[0]


@pytest.mark.timeout(20)
def test_a_device_as_ca_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    # /dev/zero never ends: reading it to look for certificates would hang the loader.
    lines = check_errors(tmp_path, '[profiles.p.checks.web]\ntype = "https"\n'
                                   'ca_file = "/dev/zero"\n')
    assert lines == ["3: profiles.p.checks.web.ca_file: ca_file '/dev/zero': "
                     "/dev/zero is not a regular file"]


def test_a_bad_ca_file_is_reported_once_per_line_not_once_per_site(tmp_path: Path) -> None:
    text = '[profiles.default.checks.web]\ntype = "https"\nca_file = "gone.pem"\n'
    lines = check_errors(tmp_path, text + SITE.replace('"49"', '"48"')
                         .replace("127.0.0.1", "127.0.0.2"))
    assert len(lines) == 1 and "no such file" in lines[0]
