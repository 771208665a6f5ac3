"""Reasons in Vietnamese, never half English: each common failure made by a real probe
against a real peer on loopback, then worded for the technician (probes/reasons_vi.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bridgemon.probes import http, sip, tcp
from bridgemon.probes.conn import connect_failure
from bridgemon.probes.reasons_vi import in_vietnamese
from bridgemon.probes.result import EchoBurst, ProbeResult, SiteRound
from bridgemon.readiness import judge_own
from bridgemon.specs import HttpSpec, SipSpec, TcpSpec
from tests.peers.util import probe_ctx
from tests.test_probe_sip import answer, udp_peer
from tests.test_windows import make_site

HOST = "127.0.0.1"
# English words the probes use; none may be left in a Vietnamese reason.
ENGLISH = re.compile(
    r"\b(connection|connect|refused|reset|timed|out|after|unreachable|down|lookup|failed|"
    r"handshake|certificate|expected|status|answer|answered|while|waiting|looking|"
    r"sending|reading|response|closed|without|server|is this|no|not|in the|expires)\b",
    re.IGNORECASE)


def assert_vietnamese(text: str) -> None:
    left = ENGLISH.findall(text)
    assert not left, f"English left in {text!r}: {left}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serving(handler: Serve) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, HOST, 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """Accepts and never answers: every wait ends in the check's timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server, port = await serving(hold)
    yield port
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_the_h323_reason_of_the_issue_reads_in_vietnamese() -> None:
    port = closed_port()
    result = await tcp.probe(HOST, TcpSpec(name="h323", kind="h323", port=port),
                             probe_ctx())
    assert result.reason == f"H.323 {port}: connection refused"  # the English side stays
    site = make_site("502", "Thành phố Tam Kỳ", None, HOST)
    site = dataclasses.replace(site, checks=(TcpSpec(name="h323", kind="h323", port=port),))
    icmp = ProbeResult("icmp", "icmp", HOST, True, 0.0, 0.01,
                       burst=EchoBurst(HOST, (0.001, 0.001, 0.001)))
    verdict = judge_own(site, [SiteRound(0.0, (icmp, result))], 1.0)
    (reason,) = [r for r in verdict.reasons if r.code == "check:h323"]
    assert reason.en == f"H.323 {port}: connection refused"
    assert reason.vi == (f"kiểm tra h323 lỗi: H.323 {port}: thiết bị từ chối kết nối "
                         "(không có dịch vụ ở cổng này)")
    assert_vietnamese(reason.vi.removeprefix("kiểm tra h323 lỗi: H.323"))


async def test_refused_http_and_sip() -> None:
    port = closed_port()
    web = await http.probe(HOST, HttpSpec(name="web", scheme="http", port=port), probe_ctx())
    codec = await sip.probe(HOST, SipSpec(name="sip", transport="tcp", port=port, timeout=2),
                            probe_ctx())
    assert web.reason is not None and codec.reason is not None
    assert in_vietnamese(web.reason).startswith(f"HTTP {port}: thiết bị từ chối kết nối")
    for reason in (web.reason, codec.reason):
        assert_vietnamese(in_vietnamese(reason))


async def test_timeouts_name_the_phase(silent_port: int) -> None:
    web = await http.probe(HOST, HttpSpec(name="web", scheme="http", port=silent_port,
                                          timeout=0.5), probe_ctx())
    codec = await sip.probe(HOST, SipSpec(name="sip", transport="tcp", port=silent_port,
                                          timeout=0.5), probe_ctx())
    assert web.reason is not None and codec.reason is not None
    assert "timed out" in web.reason
    assert in_vietnamese(web.reason) == (f"HTTP {silent_port}: quá thời gian chờ 0,5 giây "
                                         "khi chờ trả lời")
    assert in_vietnamese(codec.reason) == "SIP OPTIONS: không có trả lời trong 0,5 giây"
    tls = await http.probe(HOST, HttpSpec(name="web", scheme="https", port=silent_port,
                                          timeout=0.5, verify_tls=False), probe_ctx())
    assert tls.reason is not None
    assert in_vietnamese(tls.reason).endswith("quá thời gian chờ 0,5 giây khi bắt tay TLS")


async def test_http_status_and_tls_failures() -> None:
    async def unavailable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await serving(unavailable)
    try:
        plain = await http.probe(HOST, HttpSpec(name="web", scheme="http", port=port,
                                                expect_status=(200, 204)), probe_ctx())
        tls = await http.probe(HOST, HttpSpec(name="web", scheme="https", port=port,
                                              verify_tls=False, timeout=2), probe_ctx())
    finally:
        server.close()
        await server.wait_closed()
    assert plain.reason == f"HTTP {port}: status 503, expected 200 or 204"
    assert in_vietnamese(plain.reason) == f"HTTP {port}: trả về mã 503, cần mã 200 hoặc 204"
    assert tls.reason is not None
    assert in_vietnamese(tls.reason) == (
        f"HTTPS {port}: bắt tay TLS thất bại (WRONG_VERSION_NUMBER — cổng này có dùng TLS "
        "không?)")


async def test_sip_status_and_a_closed_udp_port() -> None:
    peer, port = await udp_peer(lambda data: [answer(data, 486, "Busy Here")])
    try:
        busy = await sip.probe(HOST, SipSpec(name="sip", port=port, accept=(200,), timeout=2),
                               probe_ctx())
    finally:
        assert peer.transport is not None
        peer.transport.close()
    assert busy.reason == "SIP OPTIONS: answered 486 Busy Here, expected 200"
    # The device's own words ("Busy Here") are quoted as they came.
    assert in_vietnamese(busy.reason) == "SIP OPTIONS: trả lời 486 Busy Here, cần mã 200"
    await asyncio.sleep(0)
    closed = await sip.probe(HOST, SipSpec(name="sip", port=port, timeout=2), probe_ctx())
    assert closed.reason is not None
    assert in_vietnamese(closed.reason) == (
        f"SIP OPTIONS: không có dịch vụ ở UDP {port} (thiết bị báo ICMP port unreachable)")


@pytest.mark.parametrize("code", [errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                                  errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.EACCES])
def test_unreachable_and_firewalled(code: int) -> None:
    # Loopback cannot be made unreachable here: the words come from the errno as a connect
    # to an unreachable site raises it.
    english = f"H.323 1720: {connect_failure(OSError(code, 'x'))}"
    vietnamese = in_vietnamese(english)
    assert vietnamese.startswith("H.323 1720: ") and vietnamese != english
    assert_vietnamese(vietnamese.removeprefix("H.323 1720: "))


@pytest.mark.parametrize(("english", "vietnamese"), [
    # Worded as probes/resolve.py words them (a lookup here would leave loopback).
    ("HTTPS 443: DNS lookup of mcu.example timed out after 2 s",
     "HTTPS 443: tra DNS tên mcu.example quá thời gian chờ 2 giây"),
    ("H.323 1720: DNS lookup of mcu.example failed: Name or service not known",
     "H.323 1720: tra DNS không thấy tên mcu.example"),
    ("SIP OPTIONS: DNS lookup of mcu.example failed: Temporary failure in name resolution",
     "SIP OPTIONS: tra DNS tên mcu.example thất bại: máy chủ DNS không trả lời"),
    ("HTTPS 443: DNS lookup of mcu.example returned no IPv4 or IPv6 address",
     "HTTPS 443: tra DNS tên mcu.example không có địa chỉ IPv4 hay IPv6"),
    ("HTTPS 443: certificate expired on 2026-01-02",
     "HTTPS 443: chứng thư số đã hết hạn ngày 2026-01-02"),
    ("HTTPS 443: certificate not trusted (issued by an unknown authority: CN=Lab CA)",
     "HTTPS 443: chứng thư số không được tin cậy (do tổ chức không rõ cấp: CN=Lab CA)"),
    ("HTTPS 443: certificate expires in 5 days (2026-12-01)",
     "HTTPS 443: chứng thư số hết hạn sau 5 ngày (2026-12-01)"),
])
def test_names_and_certificates(english: str, vietnamese: str) -> None:
    assert in_vietnamese(english) == vietnamese


def test_an_icmp_error_in_a_no_reply_reason_is_worded_too() -> None:
    site = make_site("502", "Thành phố Tam Kỳ", None, HOST)
    icmp = ProbeResult("icmp", "icmp", HOST, False, 0.0, 1.0,
                       burst=EchoBurst(HOST, (None, None, None), error="host unreachable"))
    verdict = judge_own(site, [SiteRound(0.0, (icmp,))], 1.0)
    assert verdict.reasons[0].en == "no reply to 3 echoes (host unreachable)"
    assert verdict.reasons[0].vi == "không phản hồi 3 gói ping (không tới được thiết bị)"


@pytest.mark.parametrize(("english", "vietnamese"), [
    # ICMP errors as icmp_packets.py and the pinger word them
    ("no reply to 5 echoes within 1.5 s", "không phản hồi 5 gói ping trong 1,5 giây"),
    ("host unreachable (from 10.1.2.3)", "không tới được thiết bị (do 10.1.2.3 báo)"),
    ("communication administratively prohibited (filtered) (from 10.1.2.3)",
     "bị chặn theo chính sách mạng (lọc gói) (do 10.1.2.3 báo)"),
    ("TTL exceeded in transit (routing loop?) (from 10.9.9.9)",
     "hết TTL trên đường đi (định tuyến bị vòng?) (do 10.9.9.9 báo)"),
    ("fragmentation needed (MTU too small on the path)",
     "gói quá lớn (MTU trên đường truyền quá nhỏ)"),
    ("port unreachable", "cổng không mở"),
    ("destination unreachable (code 7)", "không tới được đích (mã 7)"),
    ("HTTP: bad URL: has no host", "HTTP: URL không hợp lệ: has no host"),
])
def test_icmp_errors_and_rarer_failures(english: str, vietnamese: str) -> None:
    assert in_vietnamese(english) == vietnamese
