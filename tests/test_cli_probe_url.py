"""The URL forms of ``bridgemon probe URL`` (bridgemon.cli_probe_url): pure parsing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridgemon.cli_probe_url import parse_probe_url
from bridgemon.specs import HttpSpec, IcmpSpec, SipSpec, TcpSpec


@pytest.mark.parametrize(
    ("url", "kind", "host", "spec"),
    [
        ("icmp://10.0.0.5", "icmp", "10.0.0.5", IcmpSpec()),
        ("ICMP://diem-cau.quangnam.example", "icmp", "diem-cau.quangnam.example", IcmpSpec()),
        ("tcp://10.0.0.5:443", "tcp", "10.0.0.5", TcpSpec("tcp", port=443)),
        (" tcp://codec-01:8080/ ", "tcp", "codec-01", TcpSpec("tcp", port=8080)),
        ("h323://10.0.0.5", "h323", "10.0.0.5", TcpSpec("h323", port=1720, kind="h323")),
        ("h323://10.0.0.5:1721", "h323", "10.0.0.5", TcpSpec("h323", port=1721, kind="h323")),
        ("h323://[2001:db8::5]", "h323", "2001:db8::5", TcpSpec("h323", 1720, kind="h323")),
        ("sip://10.0.0.5", "sip", "10.0.0.5", SipSpec("sip", transport="udp", port=5060)),
        ("sip://10.0.0.5:5080;transport=tcp", "sip", "10.0.0.5",
         SipSpec("sip", transport="tcp", port=5080)),
        ("sip://codec;transport=TLS", "sip", "codec", SipSpec("sip", transport="tls", port=5061)),
        ("sip:1001@10.0.0.5", "sip", "10.0.0.5", SipSpec("sip", transport="udp", port=5060)),
        ("sips://10.0.0.5", "sip", "10.0.0.5", SipSpec("sip", transport="tls", port=5061)),
        ("sips:[::1]:5071;transport=tls", "sip", "::1", SipSpec("sip", transport="tls", port=5071)),
        ("https://10.0.0.5/", "https", "10.0.0.5",
         HttpSpec("https", scheme="https", port=443, path="/", url="https://10.0.0.5/")),
        ("http://codec.local:8080/api/status?x=1", "http", "codec.local",
         HttpSpec("http", scheme="http", port=8080, path="/api/status?x=1",
                  url="http://codec.local:8080/api/status?x=1")),
        ("HTTPS://[2001:db8::1]:8443", "https", "2001:db8::1",
         HttpSpec("https", scheme="https", port=8443, path="/", url="https://[2001:db8::1]:8443/")),
    ],
)  # fmt: skip
def test_forms(url: str, kind: str, host: str, spec: object) -> None:
    assert parse_probe_url(url) == (kind, host, spec)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("", "has no scheme"),
        ("10.0.0.5", "has no scheme"),
        ("ftp://10.0.0.5", "unknown scheme 'ftp'; use one of icmp://HOST"),
        ("tcp://10.0.0.5", "a tcp check needs a port: tcp://HOST:PORT"),
        ("tcp://10.0.0.5:0", "bad port '0' (a number 1-65535)"),
        ("tcp://10.0.0.5:65536", "bad port '65536'"),
        ("tcp://10.0.0.5:http", "bad port 'http'"),
        ("tcp://10.0.0.5:", "bad port ''"),
        ("tcp:10.0.0.5:80", "write it as tcp://…"),
        ("tcp://2001:db8::1:80", "put an IPv6 address in brackets"),
        ("tcp://[2001:db8::1:80", "missing ']'"),
        ("tcp://[10.0.0.5]:80", "'10.0.0.5' in brackets is not an IPv6 address"),
        ("tcp://[::1]x", "unexpected 'x' after the IPv6 address"),
        ("tcp://10.0.0.256:80", "'10.0.0.256' is not a valid IPv4 address"),
        ("tcp://bad_host!:80", "is not a valid host name"),
        ("tcp://:80", "has no host"),
        ("tcp://user@10.0.0.5:80", "takes no user name"),
        ("tcp://10.0.0.5:80/path", "takes no path"),
        ("tcp://10.0.0.5:80;transport=tcp", "takes no ;parameters"),
        ("icmp://10.0.0.5:7", "ping has no port"),
        ("icmp://10.0.0.5?x", "takes no query"),
        ("sip://10.0.0.5;transport=sctp", "transport must be udp, tcp or tls, not 'sctp'"),
        ("sip://10.0.0.5;lr", "unknown parameter 'lr'"),
        ("sips://10.0.0.5;transport=udp", "sips means TLS"),
        ("https://", "has no host"),
        ("http://10.0.0.5:99999/", "bad port (a number 1-65535)"),
        ("http://10.0.0.5:x/", "bad port"),
        ("http://u:p@10.0.0.5/", "user names and passwords in the URL are not supported"),
    ],
)
def test_refusals_are_clear(url: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_probe_url(url)
    assert words in str(info.value)


def test_parsed_specs_run_with_the_probe_defaults() -> None:
    _, _, spec = parse_probe_url("https://codec/")
    assert isinstance(spec, HttpSpec)
    assert spec.verify_tls and spec.expect_status == (200,) and not spec.follow_redirects


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://a..b/", "bad host 'a..b' (an empty label: two dots in a row)"),
        ("https://.codec/", "bad host '.codec' (an empty label"),
        ("http://" + "a" * 64 + ".vn/", "a label longer than 63 characters"),
        ("http://codec_01!/", "bad host 'codec_01!' (letters, digits, '-' and '_' only)"),
        ("http://-codec/", "bad host '-codec' (a label starts or ends with '-')"),
        ("http://10.0.0.256/", "bad host '10.0.0.256' (not a valid IPv4 address)"),
        ("http://[::1/", "bad host"),
        ("http://codec/\x1b[31m", "control characters in the path"),
        ("http://codec/a\x00b", "control characters in the path"),
    ],
)
def test_bad_http_hosts_and_paths_name_the_part(url: str, words: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_probe_url(url)
    assert words in str(info.value), str(info.value)


def test_international_host_names_still_parse() -> None:
    kind, host, spec = parse_probe_url("https://điểm-cầu.quảngnam.vn:8443/trạng-thái")
    assert (kind, host) == ("https", "điểm-cầu.quảngnam.vn")
    assert isinstance(spec, HttpSpec) and spec.port == 8443
    # The path goes on the wire percent-encoded (the request line is ASCII).
    assert spec.url == "https://điểm-cầu.quảngnam.vn:8443/tr%E1%BA%A1ng-th%C3%A1i"


def test_probe_command_refuses_a_bad_host_with_exit_2() -> None:
    # Through the real command: the refusal happens before any lookup or socket.
    result = subprocess.run(
        [sys.executable, "-m", "bridgemon", "probe", "http://a..b/"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "bad host 'a..b' (an empty label: two dots in a row)" in result.stderr
