"""STAMP wire formats, units and stamp:// URLs (bridgemon.stamp.packets, units, url).

The hex vectors are written by hand from RFC 8762's figures (§4.2.1, §4.3.1) and RFC
5905's timestamp format, not produced by the code under test. Fuzzing of every parser
that faces the network or the user is bounded (max_examples, deadline).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgemon.stamp import packets
from bridgemon.stamp.packets import ErrorEstimate, PacketError
from bridgemon.stamp.train import TrainSpec
from bridgemon.stamp.units import dscp_name, format_rate, parse_dscp, parse_rate
from bridgemon.stamp.url import parse_stamp_url

# 2020-03-19T00:00:00.5Z: NTP seconds 3793564800 = 0xE21D3480, fraction 0.5 = 0x80000000.
T_UNIX_NS = 1_584_576_000_500_000_000
T_NTP = bytes.fromhex("e21d3480 80000000")
# S = 1 (synchronized), Z = 0 (NTP), scale 20, multiplier 1: 2^-12 s.
ERR = bytes.fromhex("9401")

SENDER_VECTOR = (
    bytes.fromhex("00000001")  # sequence number 1
    + T_NTP  # timestamp
    + ERR  # error estimate
    + bytes.fromhex("0000")  # SSID (MBZ in RFC 8762)
    + bytes(28)  # MBZ
)

REFLECTOR_VECTOR = (
    bytes.fromhex("00000007")  # reflector's own sequence number
    + bytes.fromhex("e21d3480 c0000000")  # T3: .75 s
    + bytes.fromhex("1402")  # S = 0, scale 20, multiplier 2
    + bytes.fromhex("0000")  # SSID
    + bytes.fromhex("e21d3480 a0000000")  # T2: .625 s
    + bytes.fromhex("00000001")  # session-sender sequence number
    + T_NTP  # session-sender timestamp (T1)
    + ERR  # session-sender error estimate
    + bytes.fromhex("0000")  # MBZ
    + bytes.fromhex("3d")  # Ses-Sender TTL 61
    + bytes(3)  # MBZ
)


def test_vectors_have_the_rfc_lengths() -> None:
    assert len(SENDER_VECTOR) == packets.SENDER_HEADER == 44
    assert len(REFLECTOR_VECTOR) == packets.REFLECTOR_HEADER == 44


def test_sender_packet_matches_the_rfc_figure() -> None:
    ntp = packets.ntp_from_ns(T_UNIX_NS)
    assert ntp.to_bytes(8, "big") == T_NTP
    assert packets.sender_packet(1, ntp, 0x9401) == SENDER_VECTOR
    parsed = packets.parse_sender(SENDER_VECTOR + b"padding")
    assert (parsed.seq, parsed.timestamp, parsed.error_estimate, parsed.ssid, parsed.length) == (
        1, int.from_bytes(T_NTP, "big"), 0x9401, 0, 51)  # fmt: skip


def test_reflected_packet_matches_the_rfc_figure() -> None:
    answer = packets.parse_reflected(REFLECTOR_VECTOR)
    assert answer.seq == 7 and answer.sender_seq == 1 and answer.sender_ttl == 61
    assert answer.sender_timestamp == int.from_bytes(T_NTP, "big")
    t2 = packets.ns_from_timestamp(answer.receive_timestamp, answer.error_estimate)
    t3 = packets.ns_from_timestamp(answer.timestamp, answer.error_estimate)
    assert t2 - T_UNIX_NS == 125_000_000 and t3 - T_UNIX_NS == 250_000_000
    built = packets.reflect(
        SENDER_VECTOR, seq=7, receive_timestamp=int.from_bytes(bytes.fromhex("e21d3480a0000000"),
                                                               "big"),
        timestamp=int.from_bytes(bytes.fromhex("e21d3480c0000000"), "big"),
        error_estimate=0x1402, ttl=61,
    )  # fmt: skip
    assert built == REFLECTOR_VECTOR


def test_twamp_light_answers_are_read() -> None:
    # RFC 5357's reflected packet ends with the TTL (41 octets); twampy's at 38.
    full = packets.parse_reflected(REFLECTOR_VECTOR[:41])
    assert full.sender_ttl == 61 and full.sender_seq == 1
    short = packets.parse_reflected(REFLECTOR_VECTOR[:38])
    assert short.sender_ttl is None and short.sender_seq == 1
    with pytest.raises(PacketError, match="at least 38") as info:
        packets.parse_reflected(REFLECTOR_VECTOR[:37])
    assert info.value.kind == "truncated"


def test_reflect_is_symmetric_and_never_larger() -> None:
    request = SENDER_VECTOR + bytes(range(100))
    answer = packets.reflect(request, seq=0, receive_timestamp=1, timestamp=2,
                             error_estimate=1, ttl=64)  # fmt: skip
    assert len(answer) == len(request) and answer[44:] == request[44:]  # padding comes back
    for length in (41, 42, 43):  # TWAMP-light sender with symmetric padding
        assert len(packets.reflect(request[:length], seq=0, receive_timestamp=1, timestamp=2,
                                   error_estimate=1, ttl=64)) == length  # fmt: skip
    with pytest.raises(PacketError, match="more than was received"):
        packets.reflect(request[:40], seq=0, receive_timestamp=1, timestamp=2,
                        error_estimate=1, ttl=64)  # fmt: skip


def test_ntp_era_2036_and_ptp() -> None:
    # 2036-02-07T06:28:16Z is NTP second 2^32: the field wraps to 0 (era 1).
    wrap_ns = (2**32 - 2_208_988_800) * 10**9
    assert packets.ntp_from_ns(wrap_ns) >> 32 == 0
    # 2^-32 s is finer than a nanosecond: the round trip loses under one.
    assert abs(packets.ns_from_ntp(packets.ntp_from_ns(wrap_ns + 5)) - (wrap_ns + 5)) <= 1
    assert packets.ns_from_ntp(packets.ntp_from_ns(T_UNIX_NS)) == T_UNIX_NS
    ptp = packets.ptp_from_ns(T_UNIX_NS)
    assert ptp == (1_584_576_000 << 32) | 500_000_000
    assert packets.ns_from_timestamp(ptp, 0x4000) == T_UNIX_NS  # Z = 1: PTP format


def test_error_estimate() -> None:
    estimate = ErrorEstimate.decode(0x9401)
    assert estimate == ErrorEstimate(True, False, 20, 1)
    assert estimate.seconds == 2.0**-12
    assert estimate.encode() == 0x9401
    assert ErrorEstimate.decode(0x3F00).seconds is None  # multiplier 0: forbidden, unknown
    for seconds in (1e-6, 1e-3, 0.25, 16.0):
        coded = ErrorEstimate.for_seconds(seconds, synchronized=False)
        assert coded.seconds is not None and seconds <= coded.seconds < seconds * 1.01 + 1e-9


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_parsers_fail_only_with_packet_error(data: bytes) -> None:
    for parse in (packets.parse_reflected, packets.parse_sender):
        try:
            parse(data)
        except PacketError as exc:
            assert exc.kind == "truncated"
    try:
        answer = packets.reflect(data, seq=1, receive_timestamp=2, timestamp=3,
                                 error_estimate=4, ttl=5)  # fmt: skip
    except PacketError:
        assert len(data) < packets.MIN_REFLECTABLE
    else:
        assert len(answer) == len(data)  # never more octets out than in


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**63))
def test_fuzz_timestamps_round_trip(unix_ns: int) -> None:
    # Within NTP's 1968-2104 window the conversion is exact to a nanosecond or so.
    unix_ns %= 4_000_000_000 * 10**9
    back = packets.ns_from_ntp(packets.ntp_from_ns(unix_ns))
    assert abs(back - unix_ns) <= 1


# ---------------------------------------------------------------------------- units


def test_rates() -> None:
    assert parse_rate("2M") == 2e6 == parse_rate("2mbit/s") == parse_rate("2000k")
    assert parse_rate("1.5M") == 1.5e6 and parse_rate(" 512 kbps ") == 512e3
    assert parse_rate(64000) == 64e3
    for bad in ("2Q", "", "M", "-1M", "0", True, None):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)
    assert format_rate(2e6) == "2 Mbit/s" and format_rate(1.5e6) == "1.5 Mbit/s"
    assert format_rate(512e3) == "512 kbit/s" and format_rate(999) == "999 bit/s"
    assert format_rate(1_234_567) == "1.23 Mbit/s"


def test_dscp() -> None:
    assert parse_dscp("AF41") == 34 == parse_dscp("af41") == parse_dscp("34") == parse_dscp(34)
    assert parse_dscp("EF") == 46 and parse_dscp("CS5") == 40 and parse_dscp("BE") == 0
    for bad in ("AF51", "64", -1, "x", 3.5):
        with pytest.raises(ValueError, match="DSCP"):
            parse_dscp(bad)
    assert dscp_name(34) == "AF41" and dscp_name(0) == "BE" and dscp_name(7) == "7"


# ---------------------------------------------------------------------------- URLs


def test_url_with_every_parameter() -> None:
    spec = parse_stamp_url(
        "stamp://10.1.2.3:8620?rate=2M&size=1200&duration=5s&dscp=AF41&reflector=stateful"
        "&wait=500ms"
    )
    assert spec == TrainSpec("10.1.2.3", 8620, 2e6, 1200, 5.0, 34, "stateful", 0.5)
    assert spec.target == "10.1.2.3:8620" and spec.describe() == "2 Mbit/s × 5 s, 1200 B, AF41"


def test_url_defaults_names_and_ipv6() -> None:
    spec = parse_stamp_url("stamp://site-1.example")
    assert (spec.host, spec.port, spec.rate_bps, spec.size, spec.duration, spec.dscp) == (
        "site-1.example", 862, 2e6, 1200, 10.0, 34)  # fmt: skip
    six = parse_stamp_url("STAMP://[2001:db8::1]:9000?rate=512k")
    assert six.host == "2001:db8::1" and six.port == 9000 and six.target == "[2001:db8::1]:9000"
    assert six.plan(ipv6=True).wire_size == 1248


@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("http://10.0.0.1", "scheme"),
        ("10.0.0.1", "scheme"),
        ("stamp://", "host"),
        ("stamp://10.0.0.1:0", "port"),
        ("stamp://10.0.0.1:99999", "port"),
        ("stamp://10.0.0.1:", "port"),
        ("stamp://2001:db8::1", "host"),
        ("stamp://[10.0.0.1]", "host"),
        ("stamp://bad_host!", "host"),
        ("stamp://u@10.0.0.1", "host"),
        ("stamp://10.0.0.1/path", "path"),
        ("stamp://10.0.0.1#x", "fragment"),
        ("stamp://10.0.0.1?rate=2Q", "rate"),
        ("stamp://10.0.0.1?rate=1G", "rate"),
        ("stamp://10.0.0.1?size=big", "size"),
        ("stamp://10.0.0.1?size=20", "size"),
        ("stamp://10.0.0.1?duration=5x", "duration"),
        ("stamp://10.0.0.1?duration=10m", "duration"),
        ("stamp://10.0.0.1?duration=10ms", "duration"),
        ("stamp://10.0.0.1?dscp=AF51", "dscp"),
        ("stamp://10.0.0.1?reflector=smart", "reflector"),
        ("stamp://10.0.0.1?wait=1h", "wait"),
        ("stamp://10.0.0.1?speed=2M", "parameter 'speed'"),
        ("stamp://10.0.0.1?rate=2M&rate=3M", "parameter rate"),
        ("stamp://10.0.0.1?rate=", "parameter rate"),
        ("stamp://10.0.0.1?garbage", "parameter 'garbage': unknown"),
        ("stamp://10.0.0.1?rate", "parameter rate: empty"),
    ],
)
def test_url_errors_name_the_part(url: str, part: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_stamp_url(url)
    message = str(info.value)
    assert message.startswith(f"stamp URL {url!r}:"), message
    assert part in message, message


def test_train_bounds_in_packets_and_bytes() -> None:
    with pytest.raises(ValueError, match="100,000 packets"):
        TrainSpec("10.0.0.1", rate_bps=100e6, size=100, duration=60)
    with pytest.raises(ValueError, match="at least 10"):
        TrainSpec("10.0.0.1", rate_bps=8e3, size=1200, duration=1)
    plan = TrainSpec("10.0.0.1").plan()
    assert plan.wire_size == 1228 and plan.packets == 2036
    assert abs(plan.interval - 0.004912) < 1e-9


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_url_parser_raises_only_value_error(text: str) -> None:
    for candidate in (text, "stamp://" + text, "stamp://10.0.0.1?" + text):
        try:
            spec = parse_stamp_url(candidate)
        except ValueError as exc:
            assert "stamp URL" in str(exc) or "a stamp URL" in str(exc)
        else:
            assert 1 <= spec.port <= 65535 and spec.plan().packets <= 100_000
