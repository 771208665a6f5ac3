"""Linux socket options and ICMP error reports the STAMP code needs, named.

Python 3.11 lacks most of these names; the values are Linux's (include/uapi/linux/in.h,
in6.h, asm-generic/socket.h), identical on every architecture bridgemon runs on.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

IP_TOS = 1
IP_TTL = 2
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_MTU = 14
IP_PMTUDISC_DO = 2
IP_PMTUDISC_PROBE = 3
IPV6_MTU_DISCOVER = 23
IPV6_RECVERR = 25
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_DONTFRAG = 62
IPV6_RECVTCLASS = 66
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
IPV6_TCLASS = 67
IPV6_PMTUDISC_DO = 2
SO_TIMESTAMPNS = 35
SOL_RAW = 255
ICMP_FILTER = 1

SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3

PKTINFO4 = struct.Struct("@I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
PKTINFO6 = struct.Struct("@16sI")  # struct in6_pktinfo: addr, ifindex
TIMESPEC = struct.Struct("@qq")
_EXTENDED_ERR = struct.Struct("@IBBBBII")  # struct sock_extended_err


@dataclass(frozen=True, slots=True)
class IcmpReport:
    """An error the kernel queued for a socket (IP_RECVERR): what it was and who said it."""

    kind: str  # port_unreachable, frag_needed, host_unreachable, ... (see classify)
    errno: int
    mtu: int | None  # next-hop MTU (frag_needed) or the local MTU (local_msgsize)
    offender: str | None  # the router or host that sent the ICMP error


def classify(origin: int, icmp_type: int, code: int) -> str:
    """A short name for an ICMP (v4 or v6) error, or a local one."""
    if origin == SO_EE_ORIGIN_LOCAL:
        return "local_msgsize"
    if origin == SO_EE_ORIGIN_ICMP:
        if icmp_type == 3:
            return {0: "net_unreachable", 1: "host_unreachable", 3: "port_unreachable",
                    4: "frag_needed", 9: "prohibited", 10: "prohibited",
                    13: "prohibited"}.get(code, "unreachable")  # fmt: skip
        if icmp_type == 11:
            return "ttl_exceeded"
    elif origin == SO_EE_ORIGIN_ICMP6:
        if icmp_type == 1:
            return {0: "net_unreachable", 1: "prohibited", 3: "host_unreachable",
                    4: "port_unreachable"}.get(code, "unreachable")  # fmt: skip
        if icmp_type == 2:
            return "frag_needed"  # Packet Too Big
        if icmp_type == 3:
            return "ttl_exceeded"
    return "other"


def parse_error_cmsg(ancdata: list[tuple[int, int, bytes]]) -> IcmpReport | None:
    """The IP_RECVERR / IPV6_RECVERR report in a MSG_ERRQUEUE read, if any."""
    for level, kind, data in ancdata:
        if (level, kind) not in ((socket.IPPROTO_IP, IP_RECVERR),
                                 (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            continue
        if len(data) < _EXTENDED_ERR.size:
            continue
        errno, origin, icmp_type, code, _pad, info, _data = _EXTENDED_ERR.unpack_from(data)
        offender = _offender(data[_EXTENDED_ERR.size :])
        name = classify(origin, icmp_type, code)
        mtu = info if name in ("frag_needed", "local_msgsize") and info else None
        return IcmpReport(name, errno, mtu, offender)
    return None


def _offender(raw: bytes) -> str | None:
    # SO_EE_OFFENDER: a sockaddr_in / sockaddr_in6 right after the extended error.
    if len(raw) >= 8 and struct.unpack_from("@H", raw)[0] == socket.AF_INET:
        address = socket.inet_ntop(socket.AF_INET, raw[4:8])
        return None if address == "0.0.0.0" else address
    if len(raw) >= 24 and struct.unpack_from("@H", raw)[0] == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return None


def kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The SO_TIMESTAMPNS arrival time of a datagram (Unix ns), if the kernel gave one."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanos = TIMESPEC.unpack_from(data)
            return int(seconds) * 1_000_000_000 + int(nanos)
    return None


def set_receive_buffer(sock: socket.socket, octets: int) -> None:
    """Ask for a receive buffer of ``octets``: beyond ``net.core.rmem_max`` when the
    process may (root, CAP_NET_ADMIN: SO_RCVBUFFORCE), else as much as the limit allows."""
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, octets)
            return
        except OSError:
            continue
