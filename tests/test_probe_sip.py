"""The SIP OPTIONS check (bridgemon.probes.sip) against real SIP peers on loopback.

Real stacks: kamailio (tests/peers/kamailio.cfg) answering 200 over UDP, TCP and TLS,
404 on one port and only "100 Trying" on another; sipp as a UAS (tests/peers/
sipp_options_uas.xml). Scripted UDP peers in this process count and answer requests:
never, with garbage, with a stray answer before the right one. Misbehaving TCP peers
(tests/peers/faults.py) never speak, reset, send garbage, or split their answer. And a
SIP server inside the lab answers on a site address. No check may run past its timeout
(+0.5 s) or leave a descriptor open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from bridgemon.lab import Lab
from bridgemon.probes import sip
from bridgemon.probes.result import ProbeResult
from bridgemon.probes.sip_message import parse
from bridgemon.specs import SipSpec
from tests.peers.certs import make_certs
from tests.peers.kamailio import (
    Kamailio,
    kamailio_argv,
    kamailio_missing,
    run_kamailio,
    run_sipp,
)
from tests.peers.util import SLACK, Clock, faults_process, no_fd_leak, probe_ctx, service_lab

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dt.datetime]]:
    directory = tmp_path_factory.mktemp("sipcerts")
    return directory, make_certs(directory)


@pytest.fixture(scope="module")
def kamailio(
    tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, dict[str, dt.datetime]]
) -> Iterator[Kamailio]:
    missing = kamailio_missing()
    if missing:
        pytest.skip(missing)
    with run_kamailio(tmp_path_factory.mktemp("kamailio"), certs[0]) as running:
        yield running


@pytest.fixture(scope="module")
def faults(certs: tuple[Path, dict[str, dt.datetime]]) -> Iterator[dict[str, Any]]:
    with faults_process(certs[0]) as ports:
        yield ports


async def options(target: str, **spec: Any) -> ProbeResult:
    """One check, asserting it leaks nothing and keeps to its timeout."""
    full = SipSpec(name=spec.pop("name", "sip"), **spec)
    with no_fd_leak(), Clock() as clock:
        result = await sip.probe(target, full, probe_ctx())
    assert clock.elapsed <= full.timeout + SLACK, (clock.elapsed, result)
    return result


# --------------------------------------------------------------------------- kamailio


async def test_kamailio_answers_over_udp_tcp_and_tls(kamailio: Kamailio) -> None:
    for transport, port in (("udp", kamailio.udp), ("tcp", kamailio.tcp),
                            ("tls", kamailio.tls)):  # fmt: skip
        result = await options(HOST, transport=transport, port=port)
        assert result.ok and result.reason is None, (transport, result.reason)
        d = result.details
        assert (d["status_code"], d["reason_phrase"], d["transport"]) == (200, "OK", transport)
        assert d["server"] == "kamailio-bridgemon-test"
        assert 0 < d["rtt_seconds"] < 1 and d["requests_sent"] == 1
        assert result.kind == "sip" and result.check == "sip"
    assert result.target == f"sip:{HOST}:{kamailio.tls};transport=tls"
    assert result.details["tls_version"].startswith("TLS") and "cert_not_after" in result.details


async def test_kamailio_tls_verified_only_with_the_right_ca(
    kamailio: Kamailio, certs: tuple[Path, dict[str, dt.datetime]]
) -> None:
    trusted = await options(HOST, transport="tls", port=kamailio.tls, verify_tls=True,
                            ca_file=str(certs[0] / "ca.pem"))  # fmt: skip
    assert trusted.ok and trusted.details["tls_verified"] is True
    untrusted = await options(HOST, transport="tls", port=kamailio.tls, verify_tls=True)
    assert not untrusted.ok
    assert (untrusted.reason or "").startswith(
        f"SIP OPTIONS: TLS {kamailio.tls}: certificate not trusted (issued by an unknown authority"
    )


async def test_404_is_alive_unless_accept_narrows_it(kamailio: Kamailio) -> None:
    alive = await options(HOST, port=kamailio.not_found)
    assert alive.ok and alive.details["status_code"] == 404
    narrowed = await options(HOST, port=kamailio.not_found, accept=(200,))
    assert not narrowed.ok
    assert narrowed.reason == "SIP OPTIONS: answered 404 Not Found, expected 200"
    assert narrowed.details["status_code"] == 404  # still reported, for the metric
    several = await options(HOST, port=kamailio.not_found, accept=(200, 404, 405))
    assert several.ok


async def test_only_100_trying_is_no_answer(kamailio: Kamailio) -> None:
    result = await options(HOST, port=kamailio.trying, timeout=2.0)
    assert not result.ok
    assert result.reason == "SIP OPTIONS: only provisional 100 Trying in 2 s, no final answer"
    assert result.details["provisional"] == 100 and "status_code" not in result.details
    # Retransmitted at 0 and 0.5 s, then every T2 once proceeding: 0, 0.5, 4.5 → 2 in 2 s.
    assert result.details["requests_sent"] == 2


async def test_sipp_uas_answers(tmp_path: Path) -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    with run_sipp(tmp_path) as port:
        result = await options(HOST, port=port)
    assert result.ok, result.reason
    assert result.details["server"] == "sipp-bridgemon-test"


# --------------------------------------------------------------------------- scripted UDP


class UdpPeer(asyncio.DatagramProtocol):
    """A UDP peer on loopback that records requests and answers as ``reply`` says."""

    def __init__(self, reply: Callable[[bytes], list[bytes]]) -> None:
        self.reply = reply
        self.received: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's selector datagram transport is not a DatagramTransport subclass.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((time.monotonic(), data))
        assert self.transport is not None
        for answer in self.reply(data):
            self.transport.sendto(answer, addr)


async def udp_peer(reply: Callable[[bytes], list[bytes]], host: str = HOST) -> tuple[UdpPeer, int]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(lambda: UdpPeer(reply),
                                                          local_addr=(host, 0))  # fmt: skip
    return peer, int(transport.get_extra_info("sockname")[1])


def answer(request: bytes, code: int, phrase: str, *, branch: str | None = None,
           compact: bool = False, extra: str = "") -> bytes:  # fmt: skip
    """A response to ``request`` (its Via, From, To, Call-ID and CSeq copied)."""
    message = parse(request)
    via = message.header("via") or ""
    if branch is not None:
        via = via.replace(message.branch or "", branch)
    names = ("v", "f", "t", "i") if compact else ("Via", "From", "To", "Call-ID")
    lines = [
        f"SIP/2.0 {code} {phrase}",
        f"{names[0]}: {via}",
        f"{names[1]}: {message.header('from')}",
        f"{names[2]}: {message.header('to')};tag=peer",
        f"{names[3]}: {message.call_id}",
        f"CSeq: {message.header('cseq')}",
    ]
    text = "\r\n".join(lines) + "\r\n" + extra + ("l: 0" if compact else "Content-Length: 0")
    return (text + "\r\n\r\n").encode()


async def test_request_is_well_formed_and_retransmitted_per_t1() -> None:
    peer, port = await udp_peer(lambda data: [])
    try:
        result = await options(HOST, port=port, timeout=2.0)
    finally:
        assert peer.transport is not None
        peer.transport.close()
    assert not result.ok
    assert result.reason == "SIP OPTIONS: no answer in 2 s (sent 3 times over UDP)"
    # T1 = 0.5 s, doubling: sent at 0, 0.5 and 1.5 s; the next (3.5 s) is past the timeout.
    times = [t for t, _ in peer.received]
    assert len(times) == 3 and result.details["requests_sent"] == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.45 <= gaps[0] <= 0.65 and 0.95 <= gaps[1] <= 1.15, gaps
    # Retransmissions are the same request, byte for byte (same branch, same Call-ID).
    assert len({data for _, data in peer.received}) == 1
    request = parse(peer.received[0][1])
    assert request.method == "OPTIONS" and request.request_uri == f"sip:{HOST}:{port}"
    via = request.top_via or ""
    assert via.startswith(f"SIP/2.0/UDP {HOST}:") and ";rport;" in via
    assert (request.branch or "").startswith("z9hG4bK") and len(request.branch or "") > 12
    assert ";tag=" in (request.header("from") or "")
    assert request.header("to") == f"<sip:{HOST}:{port}>"
    assert request.cseq == (1, "OPTIONS") and request.header("max-forwards") == "70"
    assert request.header("accept") == "application/sdp"
    assert request.header("user-agent") == "bridgemon/0.1.0"
    assert request.header("contact") and request.content_length == 0


async def test_garbage_stray_answers_and_1xx_are_ignored_until_the_real_answer() -> None:
    def reply(data: bytes) -> list[bytes]:
        return [
            b"\x00\xff\x13 definitely not SIP",
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"SIP/2.0 200 OK\r\n" + b"X-Pad: " + b"x" * 40000 + b"\r\n\r\n",  # huge
            answer(data, 200, "OK", branch="z9hG4bKsomebodyelse"),  # not ours
            answer(data, 180, "Ringing"),
            answer(data, 405, "Method Not Allowed", compact=True,
                   extra="Server: folded\r\n  codec/1.0\r\n"),
        ]  # fmt: skip

    peer, port = await udp_peer(reply)
    try:
        result = await options(HOST, port=port, timeout=2.0)
    finally:
        assert peer.transport is not None
        peer.transport.close()
    assert result.ok, result.reason
    d = result.details
    assert (d["status_code"], d["reason_phrase"]) == (405, "Method Not Allowed")
    assert d["server"] == "folded codec/1.0"
    assert d["unparseable"] == 3 and d["unmatched"] == 1 and d["provisional"] == 180


async def test_only_garbage_is_no_valid_answer() -> None:
    def reply(data: bytes) -> list[bytes]:
        return [b"SIP/2.0 200 OK\r\n" + b"X: " + b"y" * 60000 + b"\r\n\r\n", b"\xfe\xff junk"]

    peer, port = await udp_peer(reply)
    try:
        result = await options(HOST, port=port, timeout=1.0)
    finally:
        assert peer.transport is not None
        peer.transport.close()
    assert not result.ok
    assert result.reason == (
        "SIP OPTIONS: no valid answer in 1 s (sent 2 times over UDP); 4 unparseable datagrams "
        "(datagram of 60023 bytes, over the 32768 accepted)"
    )


async def test_device_text_in_reasons_and_details_is_sanitised() -> None:
    # "Không tồn tại" in UTF-8, in bold (ANSI), with a bell; a Server header with a NUL, a
    # latin-1 byte and a right-to-left override.
    phrase = b"Kh\xc3\xb4ng \x1b[1mt\xe1\xbb\x93n t\xe1\xba\xa1i\x1b[0m\x07"

    def reply(data: bytes) -> list[bytes]:
        raw = answer(data, 404, "X", extra="Server: SERVER\r\n")
        raw = raw.replace(b"SERVER", b"Codec\x00 \xe2\x80\xaeV\xe9 1.0")
        return [raw.replace(b"404 X", b"404 " + phrase)]

    peer, port = await udp_peer(reply)
    try:
        result = await options(HOST, port=port, accept=(200,))
    finally:
        assert peer.transport is not None
        peer.transport.close()
    assert result.reason == "SIP OPTIONS: answered 404 Không tồn tại, expected 200"
    assert result.details["reason_phrase"] == "Không tồn tại"
    assert result.details["server"] == "Codec V\ufffd 1.0"


async def test_closed_udp_port_is_reported_at_once() -> None:
    peer, port = await udp_peer(lambda data: [])
    assert peer.transport is not None
    peer.transport.close()  # now nothing listens there: the kernel answers ICMP
    await asyncio.sleep(0)
    result = await options(HOST, port=port, timeout=2.0)
    assert not result.ok and result.duration < 0.5
    assert result.reason == f"SIP OPTIONS: nothing listens on UDP {port} (ICMP port unreachable)"


async def test_ipv6_and_names() -> None:
    try:
        peer, port = await udp_peer(lambda data: [answer(data, 200, "OK")], host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        result = await options("::1", port=port)
        assert result.ok, result.reason
        assert result.target == f"sip:[::1]:{port}"
        request = parse(peer.received[0][1])
        assert request.request_uri == f"sip:[::1]:{port}"
        assert (request.top_via or "").startswith("SIP/2.0/UDP [::1]:")
    finally:
        assert peer.transport is not None
        peer.transport.close()
    peer, port = await udp_peer(lambda data: [answer(data, 200, "OK")])
    try:
        named = await options("localhost", port=port)  # /etc/hosts; may prefer ::1
    finally:
        assert peer.transport is not None
        peer.transport.close()
    if named.details.get("address") == HOST:
        assert named.ok, named.reason
        assert parse(peer.received[0][1]).request_uri == f"sip:localhost:{port}"


# --------------------------------------------------------------------------- TCP / TLS faults


async def test_tcp_peer_that_never_speaks(faults: dict[str, Any]) -> None:
    port = faults["silent"]
    result = await options(HOST, transport="tcp", port=port, timeout=1.0)
    assert result.reason == "SIP OPTIONS: no answer in 1 s"
    tls = await options(HOST, transport="tls", port=port, timeout=1.0)
    assert tls.reason == "SIP OPTIONS: timed out after 1 s in the TLS handshake"


async def test_tcp_peer_that_resets_or_sends_garbage(faults: dict[str, Any]) -> None:
    reset = await options(HOST, transport="tcp", port=faults["reset"], timeout=1.0)
    assert not reset.ok
    assert reset.reason in (
        f"SIP OPTIONS: TCP {faults['reset']}: connection reset by the server",
        "SIP OPTIONS: the server closed the TCP connection without an answer",
    ), reset.reason
    garbage = await options(HOST, transport="tcp", port=faults["garbage"], timeout=1.0)
    assert (garbage.reason or "").startswith(
        "SIP OPTIONS: not a SIP answer on TCP: not a SIP message (it starts with"
    ), garbage.reason
    trickle = await options(HOST, transport="tcp", port=faults["trickle"], timeout=1.0)
    assert trickle.reason in (  # "H" at once, "T" a second later: on either side of 1 s
        "SIP OPTIONS: answer incomplete after 1 s: 1 byte of headers received",
        "SIP OPTIONS: answer incomplete after 1 s: 2 bytes of headers received",
    ), trickle.reason
    refused = await options(HOST, transport="tcp", port=1, timeout=1.0)
    assert refused.reason == "SIP OPTIONS: TCP 1: connection refused"


async def test_tcp_answer_split_across_reads_after_a_keepalive(faults: dict[str, Any]) -> None:
    result = await options(HOST, transport="tcp", port=faults["sip_split"], timeout=2.0)
    assert result.ok, result.reason
    assert result.details["status_code"] == 200 and result.details["server"] == "split-peer"


async def test_tcp_answer_trickling_says_how_far_it_got(faults: dict[str, Any]) -> None:
    result = await options(HOST, transport="tcp", port=faults["sip_trickle"], timeout=1.0)
    assert not result.ok
    match = re.fullmatch(
        r"SIP OPTIONS: answer incomplete after 1 s: (\d+) bytes of headers received",
        result.reason or "",
    )
    assert match, result.reason
    # One byte every 100 ms: about ten in the second the check waited.
    assert 5 <= int(match.group(1)) <= 11, result.reason


async def test_tcp_peer_flooding_keepalives_ends_the_check_early(faults: dict[str, Any]) -> None:
    cpu = time.process_time()
    result = await options(HOST, transport="tcp", port=faults["sip_flood"], timeout=3.0)
    cpu = time.process_time() - cpu
    assert result.reason == "SIP OPTIONS: over 256 KiB received on TCP and none of it an answer"
    assert result.duration < 1.0 and cpu < 0.3, (result.duration, cpu)


async def test_tls_to_a_plain_port(faults: dict[str, Any]) -> None:
    result = await options(HOST, transport="tls", port=faults["garbage"], timeout=1.0)
    assert not result.ok
    assert (result.reason or "").startswith(f"SIP OPTIONS: TLS {faults['garbage']}: TLS handshake")


async def test_cancelled_checks_release_sockets_and_slots(faults: dict[str, Any]) -> None:
    peer, port = await udp_peer(lambda data: [])
    try:
        silent = faults["silent"]
        for spec in (SipSpec("sip", port=port, timeout=5),
                     SipSpec("sip", transport="tcp", port=silent, timeout=5),
                     SipSpec("sip", transport="tls", port=silent, timeout=5)):  # fmt: skip
            ctx = probe_ctx(sockets=1)
            with no_fd_leak():
                task = asyncio.create_task(sip.probe(HOST, spec, ctx))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert not ctx.sockets.locked()
    finally:
        assert peer.transport is not None
        peer.transport.close()


async def test_bad_transport_is_a_reason() -> None:
    result = await sip.probe(HOST, SipSpec("sip", transport="sctp"), probe_ctx())
    assert result.reason == "SIP OPTIONS: unknown transport 'sctp' (udp, tcp or tls)"


# --------------------------------------------------------------------------- in the lab

SITE = "198.19.40.20"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with service_lab("--sip", "5060") as running:
        yield running


@pytest.mark.lab
async def test_lab_site_sip_answers_and_a_filtered_port_does_not(lab: Lab) -> None:
    alive = await options(SITE, port=5060, timeout=2.0)
    assert alive.ok, alive.reason
    assert alive.details["server"] == "bridgemon-lab" and alive.details["address"] == SITE
    lab.impair(SITE, drop=["udp:5060"])
    try:
        filtered = await options(SITE, port=5060, timeout=1.0)
    finally:
        lab.clear(SITE)
    assert filtered.reason == "SIP OPTIONS: no answer in 1 s (sent 2 times over UDP)"
    closed = await options(SITE, port=5070, timeout=1.0)
    assert closed.reason == "SIP OPTIONS: nothing listens on UDP 5070 (ICMP port unreachable)"


@pytest.mark.lab
async def test_lab_kamailio_bound_to_the_site_address(
    lab: Lab, tmp_path: Path, certs: tuple[Path, dict[str, dt.datetime]]
) -> None:
    missing = kamailio_missing()
    if missing:
        pytest.skip(missing)
    site = "198.19.40.21"
    argv = kamailio_argv(tmp_path, certs[0], site, 5060, 5061, 5062, 5063)
    with open(tmp_path / "kamailio.log", "wb") as log:
        proc = lab.spawn(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        lab.wait_port(site, 5061, timeout=10)
        for transport, port in (("udp", 5060), ("tcp", 5060), ("tls", 5061)):
            result = await options(site, transport=transport, port=port, timeout=2.0)
            assert result.ok, (transport, result.reason, (tmp_path / "kamailio.log").read_text())
            assert result.details["server"] == "kamailio-bridgemon-test"
        lab.impair(site, delay_ms=100)
        try:
            slow = await options(site, port=5060, timeout=2.0)
        finally:
            lab.clear(site)
        assert slow.ok and slow.details["rtt_seconds"] >= 0.1
    finally:
        proc.terminate()
        proc.wait(5)
