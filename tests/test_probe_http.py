"""The HTTP(S) check (bridgemon.probes.http) against real servers on loopback.

The servers (tests/peers/faults.py) run in a process of their own, with certificates
made for this test session (tests/peers/certs.py): valid, expiring in 3 days, expired,
for another host name, from an unknown CA, self-signed. The misbehaving ones accept and
never speak, reset, trickle a byte a second, or send an endless body: none may hold a
check past its timeout (+0.5 s) or leave a descriptor open in this process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridgemon.probes import http
from bridgemon.probes.http_message import HttpParseError, body_length, chunk_size, parse_head
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import HttpSpec
from tests.peers.certs import WRONG_HOST, make_certs
from tests.peers.util import SLACK, Clock, faults_process, no_fd_leak, open_fds, probe_ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dt.datetime]]:
    directory = tmp_path_factory.mktemp("certs")
    return directory, make_certs(directory)


@pytest.fixture(scope="module")
def peers(certs: tuple[Path, dict[str, dt.datetime]]) -> Iterator[dict[str, Any]]:
    with faults_process(certs[0]) as ports:
        yield ports


def ca(certs: tuple[Path, dict[str, dt.datetime]]) -> str:
    return str(certs[0] / "ca.pem")


async def get(url: str, **spec: Any) -> ProbeResult:
    """One check of ``url``, asserting it leaks nothing and keeps to its timeout."""
    full = HttpSpec(name=spec.pop("name", "web"), url=url, **spec)
    with no_fd_leak(), Clock() as clock:
        result = await http.probe("ignored-when-url-is-set", full, probe_ctx())
    assert clock.elapsed <= full.timeout + SLACK, (clock.elapsed, result)
    assert result.duration <= clock.elapsed
    return result


# --------------------------------------------------------------------------- plain HTTP


async def test_get_passes_with_status_timings_and_body(peers: dict[str, Any]) -> None:
    url = f"http://127.0.0.1:{peers['http']}/"
    result = await get(url)
    assert result.ok and result.reason is None
    assert (result.check, result.kind, result.target) == ("web", "http", url)
    d = result.details
    assert d["status"] == 200 and d["body_bytes"] == len(b"hello bridgemon")
    assert not d["body_truncated"]
    assert d["connect_seconds"] > 0 and 0 < d["ttfb_seconds"] <= d["total_seconds"]
    assert "tls_verified" not in d and "cert_not_after" not in d


async def test_site_address_port_and_path_build_the_url(peers: dict[str, Any]) -> None:
    spec = HttpSpec("web", scheme="http", port=peers["http"], path="/status/204",
                    expect_status=(204,))  # fmt: skip
    result = await http.probe("127.0.0.1", spec, probe_ctx())
    assert result.ok, result.reason
    assert result.target == f"http://127.0.0.1:{peers['http']}/status/204"
    assert result.details["body_bytes"] == 0  # 204 has no body, whatever it says


async def test_ttfb_measures_the_server_not_the_connection(peers: dict[str, Any]) -> None:
    result = await get(f"http://127.0.0.1:{peers['http']}/delay/300")
    assert result.ok
    d = result.details
    assert 0.3 <= d["ttfb_seconds"] < 0.6
    assert d["connect_seconds"] < 0.1 and d["total_seconds"] >= d["ttfb_seconds"]


async def test_head_reads_no_body(peers: dict[str, Any]) -> None:
    result = await get(f"http://127.0.0.1:{peers['http']}/", method="HEAD")
    assert result.ok and result.details["body_bytes"] == 0


async def test_unexpected_status_fails_with_both_codes(peers: dict[str, Any]) -> None:
    port = peers["http"]
    result = await get(f"http://127.0.0.1:{port}/status/500")
    assert not result.ok and result.reason == f"HTTP {port}: status 500, expected 200"
    assert result.details["status"] == 500
    several = await get(f"http://127.0.0.1:{port}/status/503", expect_status=(200, 401))
    assert several.reason == f"HTTP {port}: status 503, expected 200 or 401"
    assert (await get(f"http://127.0.0.1:{port}/status/401", expect_status=(200, 401))).ok


async def test_redirects_are_followed_only_when_asked(peers: dict[str, Any]) -> None:
    port = peers["http"]
    url = f"http://127.0.0.1:{port}/redirect"
    kept = await get(url)
    assert not kept.ok
    assert kept.reason == f"HTTP {port}: status 302 (redirect to /), expected 200"
    followed = await get(url, follow_redirects=True)
    assert followed.ok and followed.details["redirects"] == [f"http://127.0.0.1:{port}/"]
    loop = await get(f"http://127.0.0.1:{port}/redirect-loop", follow_redirects=True)
    assert not loop.ok and "more than 5 redirects" in (loop.reason or "")


async def test_chunked_body_and_interim_responses(peers: dict[str, Any]) -> None:
    chunked = await get(f"http://127.0.0.1:{peers['http']}/chunked")
    assert chunked.ok and chunked.details["body_bytes"] == 15
    assert not chunked.details["body_truncated"]
    interim = await get(f"http://127.0.0.1:{peers['http']}/interim")
    assert interim.ok and interim.details["status"] == 200


async def test_body_read_stops_at_the_cap(peers: dict[str, Any]) -> None:
    port = peers["http"]
    big = await get(f"http://127.0.0.1:{port}/big")
    assert big.ok and big.details["body_bytes"] == 65536 and big.details["body_truncated"]
    # Passes, with a warning naming the setting (readiness: degraded): the answer came,
    # but was not seen to its end.
    assert big.reason == (f"HTTP {port}: response body of 1000000 bytes is longer than "
                          "max_body_bytes (64 KiB); not read further")  # fmt: skip
    small = await get(f"http://127.0.0.1:{port}/big", max_body_bytes=1000)
    assert small.details["body_bytes"] == 1000
    assert (small.reason or "").endswith("max_body_bytes (1000 bytes); not read further")
    endless = await get(f"http://127.0.0.1:{port}/endless", max_body_bytes=200_000)
    assert endless.ok and endless.details["body_bytes"] == 200_000
    assert endless.details["body_truncated"]
    assert endless.reason == (f"HTTP {port}: response body still coming after 200000 bytes "
                              "(max_body_bytes); not read further")  # fmt: skip
    # A body that fits is no warning; and a cap of 0 means "don't read bodies": none either.
    assert (await get(f"http://127.0.0.1:{port}/")).reason is None
    unread = await get(f"http://127.0.0.1:{port}/big", max_body_bytes=0)
    assert unread.ok and unread.reason is None and unread.details["body_bytes"] == 0


# --------------------------------------------------------------------------- HTTPS


async def test_valid_certificate_verified_against_the_given_ca(
    peers: dict[str, Any], certs: tuple[Path, dict[str, dt.datetime]]
) -> None:
    port = peers["tls"]["valid"]
    for host in ("127.0.0.1", "localhost"):  # IP SAN, and a name (SNI + DNS SAN)
        result = await get(f"https://{host}:{port}/", ca_file=ca(certs))
        assert result.ok and result.reason is None, result.reason
        d = result.details
        assert result.kind == "https" and d["tls_verified"] is True
        assert d["cert_not_after"] == int(certs[1]["valid"].timestamp())
        assert abs(d["cert_expires_in_seconds"] - 365 * 86400) < 60
        assert "trustme" in d["cert_subject"] and "bridgemon test CA" in d["cert_issuer"]
        assert d["tls_version"].startswith("TLS") and d["tls_seconds"] > 0
        assert "cert_expiring" not in d


async def test_certificate_expiring_in_3_days_passes_with_a_warning(
    peers: dict[str, Any], certs: tuple[Path, dict[str, dt.datetime]]
) -> None:
    port = peers["tls"]["expiring"]
    result = await get(f"https://127.0.0.1:{port}/", ca_file=ca(certs))
    date = certs[1]["expiring"].strftime("%Y-%m-%d")
    assert result.ok
    assert result.reason == f"HTTPS {port}: certificate expires in 3 days ({date})"
    assert result.details["cert_expiring"] is True
    assert abs(result.details["cert_expires_in_seconds"] - 3 * 86400) < 60
    # A shorter warning window: no warning.
    quiet = await get(f"https://127.0.0.1:{port}/", ca_file=ca(certs),
                      cert_expiry_warn=86400.0)  # fmt: skip
    assert quiet.ok and quiet.reason is None


async def test_expired_wrong_host_and_untrusted_certificates_fail_with_the_reason(
    peers: dict[str, Any], certs: tuple[Path, dict[str, dt.datetime]]
) -> None:
    tls = peers["tls"]
    expired = await get(f"https://127.0.0.1:{tls['expired']}/", ca_file=ca(certs))
    date = certs[1]["expired"].strftime("%Y-%m-%d")
    assert not expired.ok
    assert expired.reason == f"HTTPS {tls['expired']}: certificate expired on {date}"
    assert expired.details["tls_verified"] is False
    assert expired.details["cert_not_after"] == int(certs[1]["expired"].timestamp())

    wrong = await get(f"https://127.0.0.1:{tls['wronghost']}/", ca_file=ca(certs))
    assert not wrong.ok
    assert wrong.reason == (
        f"HTTPS {tls['wronghost']}: certificate is for {WRONG_HOST}, not 127.0.0.1"
    )

    unknown = await get(f"https://127.0.0.1:{tls['untrusted']}/", ca_file=ca(certs))
    assert not unknown.ok
    assert unknown.reason is not None and unknown.reason.startswith(
        f"HTTPS {tls['untrusted']}: certificate not trusted (issued by an unknown authority"
    )
    self_signed = await get(f"https://127.0.0.1:{tls['selfsigned']}/", ca_file=ca(certs))
    assert self_signed.reason == f"HTTPS {tls['selfsigned']}: certificate not trusted (self-signed)"
    # The system store knows nothing of the test CA either.
    system = await get(f"https://127.0.0.1:{tls['valid']}/")
    assert not system.ok and "certificate not trusted" in (system.reason or "")


async def test_verification_off_passes_and_still_reports_the_certificate(
    peers: dict[str, Any], certs: tuple[Path, dict[str, dt.datetime]]
) -> None:
    tls = peers["tls"]
    for name in ("selfsigned", "expired", "wronghost", "expiring"):
        result = await get(f"https://127.0.0.1:{tls[name]}/", verify_tls=False)
        # Off means "this device's certificate is not ours to judge": no failure, and no
        # expiry warning either; the dates are still there for the metric.
        assert result.ok and result.reason is None, (name, result.reason)
        assert result.details["tls_verified"] is False
        assert "cert_not_after" in result.details and "cert_expiring" not in result.details


async def test_tls_against_plain_http_and_back(peers: dict[str, Any]) -> None:
    plain = peers["http"]
    result = await get(f"https://127.0.0.1:{plain}/", verify_tls=False, timeout=2)
    assert not result.ok
    assert result.reason == (
        f"HTTPS {plain}: TLS handshake failed (WRONG_VERSION_NUMBER — is this port speaking TLS?)"
    )
    tls = peers["tls"]["valid"]
    result = await get(f"http://127.0.0.1:{tls}/", timeout=2)
    assert result.reason == f"HTTP {tls}: connection closed without a response"


# --------------------------------------------------------------------------- faults


async def test_server_that_never_speaks(peers: dict[str, Any]) -> None:
    port = peers["silent"]
    result = await get(f"http://127.0.0.1:{port}/", timeout=1.0)
    assert result.reason == f"HTTP {port}: timed out after 1 s waiting for the response"
    tls = await get(f"https://127.0.0.1:{port}/", timeout=1.0)
    assert tls.reason == f"HTTPS {port}: timed out after 1 s in the TLS handshake"


async def test_server_that_resets(peers: dict[str, Any]) -> None:
    port = peers["reset"]
    result = await get(f"http://127.0.0.1:{port}/", timeout=1.0)
    assert not result.ok
    # Depending on when the RST lands: on the connect, the request, or the wait.
    assert result.reason in (
        f"HTTP {port}: connection reset by the server",
        f"HTTP {port}: connection reset by the server while waiting for the response",
        f"HTTP {port}: connection reset by the server while sending the request",
        f"HTTP {port}: connection closed without a response",
    ), result.reason


async def test_server_that_trickles_a_byte_a_second(peers: dict[str, Any]) -> None:
    port = peers["trickle"]
    result = await get(f"http://127.0.0.1:{port}/", timeout=1.5)
    assert result.reason == f"HTTP {port}: timed out after 1.5 s reading the response headers"
    assert result.details["ttfb_seconds"] < 0.5  # the first byte came at once


async def test_server_with_an_endless_body(peers: dict[str, Any]) -> None:
    port = peers["endless"]
    capped = await get(f"http://127.0.0.1:{port}/", timeout=1.5)
    assert capped.ok and capped.details["body_bytes"] == 65536
    # Asked to read it all: the timeout ends it.
    greedy = await get(f"http://127.0.0.1:{port}/", timeout=1.0, max_body_bytes=10**12)
    assert greedy.reason == f"HTTP {port}: timed out after 1 s reading the body"


async def test_garbage_and_refused(peers: dict[str, Any]) -> None:
    port = peers["garbage"]
    garbage = await get(f"http://127.0.0.1:{port}/", timeout=1.0)
    assert (garbage.reason or "").startswith(f"HTTP {port}: not an HTTP response (it starts with")
    refused = await get("http://127.0.0.1:1/", timeout=1.0)
    assert refused.reason == "HTTP 1: connection refused"


async def test_cancelled_checks_release_sockets_and_slots(peers: dict[str, Any]) -> None:
    for url in (f"http://127.0.0.1:{peers['silent']}/", f"https://127.0.0.1:{peers['silent']}/",
                f"http://127.0.0.1:{peers['endless']}/"):  # fmt: skip
        ctx = probe_ctx(sockets=1)
        spec = HttpSpec("web", url=url, timeout=5, max_body_bytes=10**12)
        with no_fd_leak():
            task = asyncio.create_task(http.probe("x", spec, ctx))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not ctx.sockets.locked()


async def test_bad_url_is_a_reason() -> None:
    result = await http.probe("x", HttpSpec("web", url="ftp://host/"), probe_ctx())
    assert not result.ok and (result.reason or "").startswith("HTTP: bad URL:")


async def test_500_concurrent_checks_keep_to_the_socket_budget(peers: dict[str, Any]) -> None:
    # Each answer takes 20 ms, so the checks overlap and only ctx.sockets bounds them.
    ctx = probe_ctx(sockets=64)
    spec = HttpSpec("web", url=f"http://127.0.0.1:{peers['http']}/delay/20", timeout=10)
    baseline = open_fds()
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        for _ in range(20_000):  # bounded: ~0.5 ms apart
            peak = max(peak, open_fds())
            if done.is_set():
                return
            await asyncio.sleep(0.0005)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    results = await asyncio.gather(*(http.probe("x", spec, ctx) for _ in range(500)))
    elapsed = time.monotonic() - started
    done.set()
    await sampler
    assert [r.reason for r in results if not r.ok] == []
    assert 32 <= peak - baseline <= 64, peak - baseline
    assert elapsed < 20
    assert open_fds() <= baseline


# --------------------------------------------------------------------------- pure parts


def test_split_url() -> None:
    url = http.split_url("HTTPS://[::1]:8443/a/b?c=d#frag")
    assert (url.scheme, url.host, url.port, url.target) == ("https", "::1", 8443, "/a/b?c=d")
    assert url.text == "https://[::1]:8443/a/b?c=d" and url.label == "HTTPS 8443"
    assert http.split_url("http://codec.local").text == "http://codec.local/"
    assert http.split_url("http://codec.local").host_header == "codec.local"
    assert http.split_url("http://h:8080/").host_header == "h:8080"
    for bad in ("ftp://h/", "http:///x", "http://h:99999/", "http://u:p@h/", "http://h:0/"):
        with pytest.raises(ValueError):
            http.split_url(bad)


def test_request_is_minimal_http_1_1() -> None:
    request = http._request(http.split_url("http://codec.local:8080/api?x=1"), "GET")
    assert request == (
        b"GET /api?x=1 HTTP/1.1\r\nHost: codec.local:8080\r\nUser-Agent: bridgemon/0.1.0\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )


def test_head_parsing_folds_and_refuses_garbage() -> None:
    response = parse_head(b"HTTP/1.0 200 OK\r\nX-A: one\r\n  two\r\nSet-Cookie: a\r\n"
                          b"set-cookie: b", b"rest")  # fmt: skip
    assert response.status == 200 and response.headers["x-a"] == "one two"
    assert response.headers["set-cookie"] == "a, b" and response.rest == b"rest"
    with pytest.raises(HttpParseError, match="not an HTTP response"):
        parse_head(b"SSH-2.0-OpenSSH_9.2", b"")
    with pytest.raises(HttpParseError, match="malformed response header"):
        parse_head(b"HTTP/1.1 200 OK\r\nno colon here", b"")
    with pytest.raises(HttpParseError, match="status code 000 out of range"):
        parse_head(b"HTTP/1.1 000 Nothing", b"")
    # Device text in the head comes out clean: UTF-8 read as such, escapes gone.
    odd = parse_head(b"HTTP/1.1 404 Kh\xc3\xb4ng th\xe1\xba\xa5y\x1b[0m\x07\r\nX: 1")
    assert odd.reason == "Không thấy"


@pytest.mark.parametrize(
    ("line", "size"),
    [(b"1a", 26), (b"1A;name=value", 26), (b"0000000000000010", 16), (b"ff \t;x", 255),
     (b"7fffffffffffffff", 2**63 - 1), (b"0", 0)],
)  # fmt: skip
def test_chunk_sizes_servers_send(line: bytes, size: int) -> None:
    assert chunk_size(line) == size


@pytest.mark.parametrize(
    ("line", "words"),
    [(b"-1", "chunk size '-1'"), (b"0x10", "chunk size '0x10'"), (b"1_0", "chunk size '1_0'"),
     (b"+1", "chunk size '+1'"), (b"", "chunk size ''"), (b"\xd9\xa3", "chunk size"),
     (b"8000000000000000", "absurd chunk size '8000000000000000'"),
     (b"0" * 16 + b"1", "absurd chunk size"), (b"\x1b[31m5", "chunk size '\ufffd5'")],
)  # fmt: skip
def test_chunk_sizes_refused(line: bytes, words: str) -> None:
    # int(x, 16) took "-1" (a negative size), "0x10", "1_0" and "+1".
    with pytest.raises(HttpParseError) as info:
        chunk_size(line)
    assert words in str(info.value) and str(info.value).startswith("malformed chunked body")


def test_content_length_is_digits_only() -> None:
    assert body_length({"content-length": "15"}) == 15
    assert body_length({"content-length": "5, 5"}) == 5  # said twice, the same
    assert body_length({}) is None
    assert body_length({"content-length": "5", "transfer-encoding": "chunked"}) is None
    for bad in ("+5", "1_0", "-1", "5, 6", "", "1" * 19, "\u0663"):
        with pytest.raises(HttpParseError, match="bad Content-Length"):
            body_length({"content-length": bad})


def test_expiry_spans() -> None:
    assert http._span(3 * 86400 - 5) == "3 days"
    assert http._span(86400) == "1 day"
    assert http._span(5 * 3600) == "5 hours"
    assert http._span(60) == "1 hour"


# --------------------------------------------------------------------------- hostile devices

MAX_LOOP_GAP = 0.2  # a 10 ms ticker beside the check: never more than this between ticks
MAX_CHECK_CPU = 0.3  # CPU seconds one check against a flooding device may cost


@dataclass
class Cost:
    result: ProbeResult
    cpu: float  # this process's CPU time during the check (the device runs elsewhere)
    max_gap: float  # longest interval between two ticks of a 10 ms ticker beside it


async def costed(url: str, **spec: Any) -> Cost:
    """One check (as :func:`get`) with a 10 ms ticker running beside it on the same loop."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    cpu = time.process_time()
    result = await get(url, **spec)
    cpu = time.process_time() - cpu
    done.set()
    await task
    assert gaps, "the ticker never ran"
    return Cost(result, cpu, max(gaps))


def clean(text: str) -> bool:
    """Device text as reasons and details may show it: no control or format characters
    (ANSI escapes, bells, NULs, direction overrides), no runs of replacement characters,
    no latin-1 mojibake of UTF-8."""
    return (
        not any(unicodedata.category(c).startswith("C") for c in text)
        and "\ufffd\ufffd" not in text
        and "Ã" not in text and "á»" not in text
        and "[31m" not in text and "[0m" not in text
    )


async def test_endless_chunk_size_lines_cost_little_and_keep_the_deadline(
    peers: dict[str, Any],
) -> None:
    port = peers["chunk_zeros"]
    cost = await costed(f"http://127.0.0.1:{port}/", timeout=3.0)
    assert not cost.result.ok
    assert (cost.result.reason or "").startswith(f"HTTP {port}: malformed chunked body"), cost
    assert cost.cpu < MAX_CHECK_CPU, cost
    assert cost.max_gap < MAX_LOOP_GAP, cost


async def test_endless_one_byte_chunks_stop_at_the_cap_and_say_so(peers: dict[str, Any]) -> None:
    port = peers["chunk_ones"]
    cost = await costed(f"http://127.0.0.1:{port}/", timeout=3.0)
    result = cost.result
    # The status came, in time: the web interface answers; but its body never ended within
    # what a health check reads, which the reason says (readiness: degraded, not ready).
    assert result.ok and result.details["body_truncated"], result
    assert result.reason == (
        f"HTTP {port}: response body still coming after 64 KiB (max_body_bytes); not read further"
    )
    # The cap counts what came off the wire, framing included: 6 bytes per 1-byte chunk.
    assert 65536 // 6 - 1 <= result.details["body_bytes"] <= 65536 // 6 + 1
    assert cost.cpu < MAX_CHECK_CPU, cost
    assert cost.max_gap < MAX_LOOP_GAP, cost
    # Told to read it all, the deadline ends it, on time, and the loop keeps ticking.
    greedy = await costed(f"http://127.0.0.1:{port}/", timeout=1.5, max_body_bytes=10**12)
    assert greedy.result.reason == f"HTTP {port}: timed out after 1.5 s reading the body"
    assert greedy.result.details["body_bytes"] > 0  # a timeout still says how much came
    assert greedy.max_gap < MAX_LOOP_GAP, greedy


async def test_negative_chunk_size_is_malformed(peers: dict[str, Any]) -> None:
    port = peers["chunk_negative"]
    result = await get(f"http://127.0.0.1:{port}/", timeout=2.0)
    assert result.reason == f"HTTP {port}: malformed chunked body (chunk size '-1')"


async def test_a_trickling_device_cannot_extend_the_deadline(peers: dict[str, Any]) -> None:
    # Holds before issue 9 too: the deadline was already one for the whole check.
    port = peers["chunk_trickle"]
    body = await get(f"http://127.0.0.1:{port}/", timeout=1.0, max_body_bytes=10**12)
    assert body.reason == f"HTTP {port}: timed out after 1 s reading the body"
    hops = await get(f"http://127.0.0.1:{peers['http']}/slow-redirect", timeout=1.0,
                     follow_redirects=True)  # fmt: skip
    assert hops.reason == f"HTTP {peers['http']}: timed out after 1 s waiting for the response"
    assert len(hops.details["redirects"]) in (2, 3)  # 300 ms each: the 4th never came


async def test_invalid_host_in_url_or_redirect_is_a_reason_not_a_crash(
    peers: dict[str, Any],
) -> None:
    port = peers["http"]
    result = await get(f"http://127.0.0.1:{port}/redirect-bad-host", follow_redirects=True)
    assert not result.ok
    assert result.reason == (
        f"HTTP {port}: redirect to an unusable URL: 'http://a..b/': "
        "bad host 'a..b' (an empty label: two dots in a row)"
    )
    direct = await http.probe("x", HttpSpec("web", url="http://a..b/"), probe_ctx())
    assert direct.reason == (
        "HTTP: bad URL: 'http://a..b/': bad host 'a..b' (an empty label: two dots in a row)"
    )


async def test_device_text_in_reasons_and_details_is_sanitised(peers: dict[str, Any]) -> None:
    port = peers["http"]
    status = await get(f"http://127.0.0.1:{port}/hostile-text")
    assert status.reason == f"HTTP {port}: status 500, expected 200"
    assert status.details["status_reason"] == "Lỗi máy chủ \ufffd end"
    moved = await get(f"http://127.0.0.1:{port}/redirect-hostile")
    assert moved.reason is not None and clean(moved.reason), moved.reason
    assert moved.reason == (
        f"HTTP {port}: status 302 (redirect to /Lỗimáychủ\ufffd end), expected 200"
    )
    followed = await get(f"http://127.0.0.1:{port}/redirect-hostile", follow_redirects=True)
    assert not followed.ok and followed.reason is not None
    assert clean(followed.reason), followed.reason
    assert "control characters in the path" in followed.reason


def test_certificate_names_are_sanitised() -> None:
    # A device certificate is the device's text too: its names go into reasons.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from bridgemon.probes.conn import cert_info

    key = ec.generate_private_key(ec.SECP256R1())
    hostile = "\x1b[31mcodec\x07 \u202eđiểm cầu"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostile)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    info = cert_info(cert.public_bytes(serialization.Encoding.DER))
    assert info is not None
    assert info.names == ("codec điểm cầu",)
    assert info.subject == info.issuer == "CN=codec điểm cầu"
