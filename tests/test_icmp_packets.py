"""ICMP echo building and parsing: pure functions over bytes, fuzzed with hypothesis."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.probes.icmp_packets import (
    COOKIE_SIZE,
    ICMP6_DEST_UNREACH,
    ICMP6_ECHO_REPLY,
    ICMP6_ECHO_REQUEST,
    ICMP6_PACKET_TOO_BIG,
    ICMP6_TIME_EXCEEDED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    EchoTemplate,
    Reply,
    checksum,
    fold,
    parse_v4,
    parse_v6,
)

COOKIE = b"bridgem\x01"
SRC = bytes([127, 49, 0, 1])
DST = bytes([127, 49, 16, 10])


# --------------------------------------------------------------------------- builders


def with_checksum(icmp: bytes) -> bytes:
    """Fill the checksum field (bytes 2-3) of an ICMP message."""
    zeroed = icmp[:2] + b"\0\0" + icmp[4:]
    return zeroed[:2] + struct.pack("!H", checksum(zeroed)) + zeroed[4:]


def ipv4_header(payload_len: int, proto: int = 1, ihl: int = 5, version: int = 4) -> bytes:
    options = b"\x01" * ((ihl - 5) * 4)  # NOPs
    total = ihl * 4 + payload_len
    header = struct.pack(
        "!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, 0x1234, 0, 64, proto, 0, SRC, DST
    )
    return header + options


def ipv6_header(payload_len: int, next_header: int = 58, version: int = 6) -> bytes:
    return struct.pack("!IHBB", version << 28, payload_len, next_header, 64) + bytes(32)


def echo_v4(icmp_type: int, ident: int, seq: int, payload: bytes) -> bytes:
    return with_checksum(struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload)


def error_v4(icmp_type: int, code: int, quoted: bytes) -> bytes:
    return with_checksum(struct.pack("!BBHI", icmp_type, code, 0, 0) + quoted)


def quote_v4(request: bytes, keep: int = 8, proto: int = 1, ihl: int = 5) -> bytes:
    """What a router sends back: the original IP header + the first ``keep`` ICMP bytes."""
    return ipv4_header(len(request), proto=proto, ihl=ihl) + request[:keep]


def error_v6(icmp_type: int, code: int, quoted: bytes) -> bytes:
    return struct.pack("!BBHI", icmp_type, code, 0, 1280) + quoted


def quote_v6(request: bytes, keep: int | None = None, next_header: int = 58) -> bytes:
    body = request if keep is None else request[:keep]
    return ipv6_header(len(request), next_header=next_header) + body


def request(ident: int = 0x4242, seq: int = 7, size: int = 56, ipv6: bool = False) -> bytes:
    return EchoTemplate(COOKIE, size, ipv6).build(ident, seq)


# --------------------------------------------------------------------------- checksum


def test_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to 2ddf0, folds to ddf2 -> checksum 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_of_odd_length_pads_with_zero() -> None:
    assert checksum(b"\x01") == checksum(b"\x01\x00") == 0xFEFF
    assert checksum(bytes.fromhex("0001f203f4f5f6")) == checksum(bytes.fromhex("0001f203f4f5f600"))


def test_checksum_of_nothing_and_of_zeros() -> None:
    assert checksum(b"") == 0xFFFF
    assert checksum(bytes(20)) == 0xFFFF


def test_fold_carries_repeatedly() -> None:
    assert fold(0x2DDF0) == 0x220D
    assert fold(0x1FFFF) == (~0x0001) & 0xFFFF  # 0xFFFF + 1 -> 0x0000 + carry -> 0x0001
    assert fold(0) == 0xFFFF


@given(st.binary(max_size=300))
def test_data_plus_its_checksum_verifies(data: bytes) -> None:
    if len(data) % 2:
        data += b"\0"
    assert checksum(data + struct.pack("!H", checksum(data))) == 0


# --------------------------------------------------------------------------- echo template


def test_echo_request_v4_layout() -> None:
    packet = request(ident=0xBEEF, seq=0x0102, size=56)
    assert len(packet) == 8 + 56
    icmp_type, code, _csum, ident, seq = struct.unpack_from("!BBHHH", packet)
    assert (icmp_type, code, ident, seq) == (ICMP_ECHO_REQUEST, 0, 0xBEEF, 0x0102)
    assert packet[8:16] == COOKIE
    assert checksum(packet) == 0


def test_echo_request_v6_type() -> None:
    packet = request(size=56, ipv6=True)
    assert packet[0] == ICMP6_ECHO_REQUEST
    assert checksum(packet) == 0


def test_payload_is_at_least_the_cookie() -> None:
    packet = request(size=0)
    assert len(packet) == 8 + COOKIE_SIZE
    assert packet[8:] == COOKIE
    assert checksum(packet) == 0


def test_template_rejects_a_wrong_cookie() -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        EchoTemplate(b"short", 56, ipv6=False)


def test_one_template_builds_different_echoes() -> None:
    template = EchoTemplate(COOKIE, 1200, ipv6=False)
    first, second = template.build(1, 1), template.build(1, 2)
    assert first[8:] == second[8:]
    assert first[:8] != second[:8]
    assert checksum(first) == checksum(second) == 0


@given(
    cookie=st.binary(min_size=8, max_size=8),
    size=st.integers(0, 2000),
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    ipv6=st.booleans(),
)
def test_every_built_echo_verifies(
    cookie: bytes, size: int, ident: int, seq: int, ipv6: bool
) -> None:
    packet = EchoTemplate(cookie, size, ipv6).build(ident, seq)
    assert len(packet) == 8 + max(size, 8)
    assert checksum(packet) == 0
    # the stored checksum equals one computed from scratch over the zeroed header
    zeroed = packet[:2] + b"\0\0" + packet[4:]
    assert struct.unpack_from("!H", packet, 2)[0] == checksum(zeroed)
    assert struct.unpack_from("!HH", packet, 4) == (ident, seq)
    assert packet[8:16] == cookie


# --------------------------------------------------------------------------- parse_v4


def test_parse_v4_echo_reply_without_ip_header() -> None:
    reply = echo_v4(ICMP_ECHO_REPLY, 0x4242, 7, request()[8:])
    assert parse_v4(reply, has_ip_header=False) == Reply("echo", 0x4242, 7, COOKIE)


@pytest.mark.parametrize("ihl", [5, 6, 15])
def test_parse_v4_echo_reply_with_ip_header(ihl: int) -> None:
    reply = echo_v4(ICMP_ECHO_REPLY, 0xFFFF, 0, request()[8:])
    packet = ipv4_header(len(reply), ihl=ihl) + reply
    assert parse_v4(packet, has_ip_header=True) == Reply("echo", 0xFFFF, 0, COOKIE)


def test_parse_v4_header_flag_matters() -> None:
    reply = echo_v4(ICMP_ECHO_REPLY, 1, 2, COOKIE)
    packet = ipv4_header(len(reply)) + reply
    # read as if there were no IP header, 0x45 is not a type we know
    assert parse_v4(packet, has_ip_header=False) is None
    # read as if there were one, the reply is too short to hold a header
    assert parse_v4(reply, has_ip_header=True) is None


def test_parse_v4_short_cookie_is_what_there_is() -> None:
    reply = echo_v4(ICMP_ECHO_REPLY, 1, 2, b"abc")
    assert parse_v4(reply, has_ip_header=False) == Reply("echo", 1, 2, b"abc")


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x00" * 7,  # shorter than an ICMP header
        echo_v4(ICMP_ECHO_REQUEST, 1, 2, COOKIE),  # our own request, seen on loopback
        echo_v4(5, 1, 2, COOKIE),  # redirect
        echo_v4(13, 1, 2, COOKIE),  # timestamp
    ],
)
def test_parse_v4_ignores_other_messages(packet: bytes) -> None:
    assert parse_v4(packet, has_ip_header=False) is None


@pytest.mark.parametrize(
    "packet",
    [
        ipv4_header(8, version=6) + echo_v4(ICMP_ECHO_REPLY, 1, 2, b""),  # not IPv4
        # IHL 4 (< 5): taken at its word, an echo reply would start at byte 16
        bytes([0x44]) + bytes(15) + echo_v4(ICMP_ECHO_REPLY, 1, 2, COOKIE),
        ipv4_header(8, ihl=6) + echo_v4(ICMP_ECHO_REPLY, 1, 2, b"")[:3],  # truncated
        ipv4_header(0)[:19],
    ],
)
def test_parse_v4_rejects_bad_ip_headers(packet: bytes) -> None:
    assert parse_v4(packet, has_ip_header=True) is None


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "network unreachable"),
        (1, "host unreachable"),
        (3, "port unreachable"),
        (4, "fragmentation needed (MTU too small on the path)"),
        (10, "host administratively prohibited"),
        (13, "communication administratively prohibited (filtered)"),
        (7, "destination unreachable (code 7)"),
    ],
)
def test_parse_v4_destination_unreachable(code: int, text: str) -> None:
    error = error_v4(ICMP_DEST_UNREACH, code, quote_v4(request(ident=99, seq=3), keep=64))
    assert parse_v4(error, has_ip_header=False) == Reply("error", 99, 3, COOKIE, text)
    with_header = ipv4_header(len(error)) + error
    assert parse_v4(with_header, has_ip_header=True) == Reply("error", 99, 3, COOKIE, text)


def test_parse_v4_time_exceeded() -> None:
    error = error_v4(ICMP_TIME_EXCEEDED, 0, quote_v4(request(ident=5, seq=6), keep=16))
    assert parse_v4(error, has_ip_header=False) == Reply(
        "error", 5, 6, COOKIE, "TTL exceeded in transit (routing loop?)"
    )


def test_parse_v4_error_quoting_only_the_icmp_header_has_no_cookie() -> None:
    error = error_v4(ICMP_DEST_UNREACH, 1, quote_v4(request(ident=5, seq=6), keep=8))
    assert parse_v4(error, has_ip_header=False) == Reply("error", 5, 6, b"", "host unreachable")


def test_parse_v4_error_with_options_in_the_quoted_header() -> None:
    error = error_v4(ICMP_DEST_UNREACH, 3, quote_v4(request(ident=5, seq=6), keep=16, ihl=7))
    assert parse_v4(error, has_ip_header=False) == Reply("error", 5, 6, COOKIE, "port unreachable")


@pytest.mark.parametrize(
    "quoted",
    [
        quote_v4(request(), keep=16, proto=6),  # about a TCP segment, not our echo
        quote_v4(echo_v4(ICMP_ECHO_REPLY, 1, 2, COOKIE), keep=16),  # about a reply
        quote_v4(request(), keep=7),  # too little of the echo quoted
        quote_v4(request(), keep=16)[:19],  # quoted IP header cut short
        ipv4_header(16, version=6) + request()[:16],  # quoted header is not IPv4
        # quoted IHL 4 (< 5), protocol ICMP: taken at its word, our echo is at byte 16
        bytes([0x44]) + bytes(8) + b"\x01" + bytes(6) + request()[:16],
    ],
)
def test_parse_v4_errors_not_about_our_echo(quoted: bytes) -> None:
    assert parse_v4(error_v4(ICMP_DEST_UNREACH, 1, quoted), has_ip_header=False) is None


# --------------------------------------------------------------------------- parse_v6


def test_parse_v6_echo_reply() -> None:
    reply = struct.pack("!BBHHH", ICMP6_ECHO_REPLY, 0, 0, 0x1234, 0xFFFF) + request()[8:]
    assert parse_v6(reply) == Reply("echo", 0x1234, 0xFFFF, COOKIE)


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        bytes([ICMP6_ECHO_REPLY]) + bytes(6),  # 7 bytes
        request(ipv6=True),  # our own request
        struct.pack("!BBHI", 135, 0, 0, 0) + bytes(16),  # neighbour solicitation
        struct.pack("!BBHHH", ICMP_ECHO_REPLY, 0, 0, 1, 2) + COOKIE,  # an ICMPv4 reply
    ],
)
def test_parse_v6_ignores_other_messages(packet: bytes) -> None:
    assert parse_v6(packet) is None


@pytest.mark.parametrize(
    ("icmp_type", "code", "text"),
    [
        (ICMP6_DEST_UNREACH, 0, "no route to destination"),
        (ICMP6_DEST_UNREACH, 1, "communication administratively prohibited (filtered)"),
        (ICMP6_DEST_UNREACH, 3, "address unreachable"),
        (ICMP6_DEST_UNREACH, 4, "port unreachable"),
        (ICMP6_DEST_UNREACH, 5, "destination unreachable (code 5)"),
        (ICMP6_PACKET_TOO_BIG, 0, "packet too big (MTU too small on the path)"),
        (ICMP6_TIME_EXCEEDED, 0, "hop limit exceeded in transit (routing loop?)"),
    ],
)
def test_parse_v6_errors_quoting_our_echo(icmp_type: int, code: int, text: str) -> None:
    error = error_v6(icmp_type, code, quote_v6(request(ident=77, seq=8, ipv6=True)))
    assert parse_v6(error) == Reply("error", 77, 8, COOKIE, text)


def test_parse_v6_error_quoting_only_the_icmp_header_has_no_cookie() -> None:
    error = error_v6(ICMP6_DEST_UNREACH, 3, quote_v6(request(ident=1, seq=2, ipv6=True), keep=8))
    assert parse_v6(error) == Reply("error", 1, 2, b"", "address unreachable")


@pytest.mark.parametrize(
    "quoted",
    [
        quote_v6(request(ipv6=True), next_header=6),  # about TCP
        quote_v6(request(ipv6=True), next_header=0),  # extension header first: not followed
        ipv6_header(16, version=4) + request(ipv6=True)[:16],
        quote_v6(struct.pack("!BBHHH", ICMP6_ECHO_REPLY, 0, 0, 1, 2) + COOKIE),
        quote_v6(request(ipv6=True), keep=7),
        ipv6_header(16)[:39],
    ],
)
def test_parse_v6_errors_not_about_our_echo(quoted: bytes) -> None:
    assert parse_v6(error_v6(ICMP6_DEST_UNREACH, 0, quoted)) is None


# --------------------------------------------------------------------------- fuzzing


def check_result(result: object) -> None:
    assert result is None or isinstance(result, Reply)
    if isinstance(result, Reply):
        assert result.kind in ("echo", "error")
        assert 0 <= result.ident <= 0xFFFF
        assert 0 <= result.seq <= 0xFFFF
        assert isinstance(result.cookie, bytes)
        assert len(result.cookie) <= COOKIE_SIZE
        assert (result.error is None) == (result.kind == "echo")


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_fuzz_parse_v4_raw_bytes(packet: bytes) -> None:
    check_result(parse_v4(packet, has_ip_header=True))
    check_result(parse_v4(packet, has_ip_header=False))


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_fuzz_parse_v6_raw_bytes(packet: bytes) -> None:
    check_result(parse_v6(packet))


byte = st.integers(0, 255)


def mostly(good: st.SearchStrategy[int], other: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    """``good`` three times in four, else ``other``: deep paths get reached, edges too."""
    return st.integers(0, 3).flatmap(lambda k: good if k else other)


def ip_version_and_ihl(draw: st.DrawFn, version: int) -> tuple[int, int]:
    return (
        draw(mostly(st.just(version), st.integers(0, 15))),
        draw(mostly(st.integers(5, 7), st.integers(0, 15))),
    )


def cut_short(draw: st.DrawFn, packet: bytes) -> bytes:
    """Whole half the time, else truncated anywhere."""
    return packet[: draw(mostly(st.just(len(packet)), st.integers(0, len(packet))))]


@st.composite
def near_valid_v4(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A plausible IPv4 ICMP packet with random fields, possibly cut short anywhere."""
    inner_version, inner_ihl = ip_version_and_ihl(draw, 4)
    inner_header = (
        bytes([(inner_version << 4) | inner_ihl])
        + draw(st.binary(min_size=8, max_size=8))
        + bytes([draw(mostly(st.just(1), st.sampled_from([6, 17]) | byte))])  # protocol
        + draw(st.binary(min_size=10, max_size=10))
        + draw(st.binary(min_size=max(0, inner_ihl - 5) * 4, max_size=max(0, inner_ihl - 5) * 4))
    )
    inner_icmp = (
        bytes([draw(mostly(st.just(ICMP_ECHO_REQUEST), st.just(ICMP_ECHO_REPLY) | byte))])
        + draw(st.binary(min_size=7, max_size=7))
        + draw(st.binary(max_size=16))
    )
    icmp = (
        bytes([draw(mostly(st.sampled_from([0, 3, 11]), st.just(8) | byte)), draw(byte)])
        + draw(st.binary(min_size=6, max_size=6))
        + inner_header
        + inner_icmp
    )
    has_header = draw(st.booleans())
    if has_header:
        version, ihl = ip_version_and_ihl(draw, 4)
        size = 19 + max(0, ihl - 5) * 4
        icmp = bytes([(version << 4) | ihl]) + draw(st.binary(min_size=size, max_size=size)) + icmp
    return cut_short(draw, icmp), has_header


@st.composite
def near_valid_v6(draw: st.DrawFn) -> bytes:
    """A plausible ICMPv6 packet with random fields, possibly cut short anywhere."""
    version = draw(mostly(st.just(6), st.integers(0, 15)))
    inner = (
        bytes([version << 4])
        + draw(st.binary(min_size=5, max_size=5))
        + bytes([draw(mostly(st.just(58), st.sampled_from([6, 0]) | byte))])  # next header
        + draw(st.binary(min_size=33, max_size=33))
        + bytes([draw(mostly(st.just(ICMP6_ECHO_REQUEST), st.just(ICMP6_ECHO_REPLY) | byte))])
        + draw(st.binary(min_size=7, max_size=7))
        + draw(st.binary(max_size=16))
    )
    packet = (
        bytes([draw(mostly(st.sampled_from([1, 2, 3, 129]), st.just(128) | byte)), draw(byte)])
        + draw(st.binary(min_size=6, max_size=6))
        + inner
    )
    return cut_short(draw, packet)


@settings(max_examples=1000)
@given(near_valid_v4())
def test_fuzz_parse_v4_near_valid(case: tuple[bytes, bool]) -> None:
    packet, has_header = case
    check_result(parse_v4(packet, has_ip_header=has_header))
    check_result(parse_v4(packet, has_ip_header=not has_header))


@settings(max_examples=1000)
@given(near_valid_v6())
def test_fuzz_parse_v6_near_valid(packet: bytes) -> None:
    check_result(parse_v6(packet))


@given(
    ident=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    code=st.integers(0, 255),
    keep=st.integers(8, 64),
    ihl=st.integers(5, 15),
)
def test_errors_about_our_echo_always_parse(
    ident: int, seq: int, code: int, keep: int, ihl: int
) -> None:
    echo = request(ident=ident, seq=seq)
    result = parse_v4(error_v4(ICMP_DEST_UNREACH, code, quote_v4(echo, keep, ihl=ihl)), False)
    assert result is not None
    assert (result.kind, result.ident, result.seq) == ("error", ident, seq)
    assert result.cookie == COOKIE[: max(0, keep - 8)]
    echo6 = request(ident=ident, seq=seq, ipv6=True)
    result6 = parse_v6(error_v6(ICMP6_TIME_EXCEEDED, code, quote_v6(echo6, keep)))
    assert result6 is not None
    assert (result6.ident, result6.seq, result6.cookie) == (ident, seq, COOKIE[: keep - 8])
