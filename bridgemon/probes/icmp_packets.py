"""Building ICMP echo requests and parsing whatever comes back.

Pure functions over bytes, no sockets. The parser faces packets from the network, so it
must never raise on any input: anything it does not understand is ``None``. It is fuzzed
with hypothesis in tests/test_icmp_packets.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11

ICMP6_DEST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129

COOKIE_SIZE = 8

_HEADER = struct.Struct("!BBHHH")
_IDENT_SEQ = struct.Struct("!HH")

_UNREACH_V4 = {
    0: "network unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed (MTU too small on the path)",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    13: "communication administratively prohibited (filtered)",
}
_UNREACH_V6 = {
    0: "no route to destination",
    1: "communication administratively prohibited (filtered)",
    3: "address unreachable",
    4: "port unreachable",
}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return fold(total)


def fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class EchoTemplate:
    """Echo requests of one payload size, built fast.

    The payload (cookie + padding) is the same for every echo, so its share of the
    checksum is summed once; each echo then costs a pack and a few additions.
    """

    __slots__ = ("_payload", "_payload_sum", "_type")

    def __init__(self, cookie: bytes, size: int, ipv6: bool) -> None:
        if len(cookie) != COOKIE_SIZE:
            raise ValueError("cookie must be 8 bytes")
        size = max(size, COOKIE_SIZE)
        pad = bytes((0x42 + i) & 0xFF for i in range(size - COOKIE_SIZE))
        self._payload = cookie + pad
        padded = self._payload + (b"\0" if len(self._payload) % 2 else b"")
        self._payload_sum = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
        self._type = ICMP6_ECHO_REQUEST if ipv6 else ICMP_ECHO_REQUEST

    def build(self, ident: int, seq: int) -> bytes:
        # For ICMPv6 and datagram sockets the kernel fills the checksum in; a correct one
        # here does no harm there and keeps one code path.
        total = self._payload_sum + (self._type << 8) + ident + seq
        return _HEADER.pack(self._type, 0, fold(total), ident, seq) + self._payload


@dataclass(frozen=True, slots=True)
class Reply:
    """A parsed ICMP message that concerns one of our echoes."""

    kind: Literal["echo", "error"]
    ident: int
    seq: int
    cookie: bytes  # the first 8 payload bytes (echo) or b"" when the error quotes too little
    error: str | None = None


def parse_v4(packet: bytes, has_ip_header: bool) -> Reply | None:
    """Parse an IPv4 ICMP packet (raw sockets deliver the IP header, ping sockets don't)."""
    try:
        offset = 0
        if has_ip_header:
            if len(packet) < 20 or packet[0] >> 4 != 4:
                return None
            offset = (packet[0] & 0x0F) * 4
            if offset < 20:
                return None
        if len(packet) < offset + 8:
            return None
        icmp_type, code = packet[offset], packet[offset + 1]
        if icmp_type == ICMP_ECHO_REPLY:
            ident, seq = _IDENT_SEQ.unpack_from(packet, offset + 4)
            cookie = packet[offset + 8 : offset + 8 + COOKIE_SIZE]
            return Reply("echo", ident, seq, cookie)
        if icmp_type in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
            inner = offset + 8
            if len(packet) < inner + 20 or packet[inner] >> 4 != 4 or packet[inner + 9] != 1:
                return None
            inner_icmp = inner + (packet[inner] & 0x0F) * 4
            if (packet[inner] & 0x0F) < 5 or len(packet) < inner_icmp + 8:
                return None
            if packet[inner_icmp] != ICMP_ECHO_REQUEST:
                return None
            ident, seq = _IDENT_SEQ.unpack_from(packet, inner_icmp + 4)
            cookie = packet[inner_icmp + 8 : inner_icmp + 8 + COOKIE_SIZE]
            if icmp_type == ICMP_TIME_EXCEEDED:
                text = "TTL exceeded in transit (routing loop?)"
            else:
                text = _UNREACH_V4.get(code, f"destination unreachable (code {code})")
            return Reply("error", ident, seq, cookie, text)
        return None
    except (IndexError, struct.error):  # pragma: no cover - bounds are checked above
        return None


def parse_v6(packet: bytes) -> Reply | None:
    """Parse an ICMPv6 packet (no IPv6 header: raw and ping sockets both strip it)."""
    try:
        if len(packet) < 8:
            return None
        icmp_type, code = packet[0], packet[1]
        if icmp_type == ICMP6_ECHO_REPLY:
            ident, seq = _IDENT_SEQ.unpack_from(packet, 4)
            return Reply("echo", ident, seq, packet[8 : 8 + COOKIE_SIZE])
        if icmp_type in (ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED):
            inner = 8
            # The quoted packet: a 40-byte IPv6 header whose next header is ICMPv6 (58).
            if len(packet) < inner + 48 or packet[inner] >> 4 != 6 or packet[inner + 6] != 58:
                return None
            inner_icmp = inner + 40
            if packet[inner_icmp] != ICMP6_ECHO_REQUEST:
                return None
            ident, seq = _IDENT_SEQ.unpack_from(packet, inner_icmp + 4)
            cookie = packet[inner_icmp + 8 : inner_icmp + 8 + COOKIE_SIZE]
            if icmp_type == ICMP6_PACKET_TOO_BIG:
                text = "packet too big (MTU too small on the path)"
            elif icmp_type == ICMP6_TIME_EXCEEDED:
                text = "hop limit exceeded in transit (routing loop?)"
            else:
                text = _UNREACH_V6.get(code, f"destination unreachable (code {code})")
            return Reply("error", ident, seq, cookie, text)
        return None
    except (IndexError, struct.error):  # pragma: no cover - bounds are checked above
        return None
