"""STAMP test packets, unauthenticated mode (RFC 8762 §4.2.1, §4.3.1), read and written.

STAMP's unauthenticated packets are TWAMP-light's (RFC 5357 §4.1.2, §4.2.1 and its
Appendix I) with the padding given a name, so one parser serves both. Offsets in octets:

Session-Sender test packet, 44 octets, then padding up to the packet size::

     0  Sequence Number                u32
     4  Timestamp (T1)                 u64   NTP (or PTPv2 truncated when Z = 1)
    12  Error Estimate                 u16   S | Z | Scale(6) | Multiplier(8)
    14  SSID                           u16   RFC 8972; "MBZ" in RFC 8762
    16  MBZ                            28 octets: symmetric with the reflected packet

Session-Reflector test packet, 44 octets, then the sender's padding::

     0  Sequence Number                u32   own counter (stateful) or copied (stateless)
     4  Timestamp (T3, sent)           u64
    12  Error Estimate                 u16
    14  SSID                           u16
    16  Receive Timestamp (T2)         u64
    24  Session-Sender Sequence Number u32
    28  Session-Sender Timestamp (T1)  u64
    36  Session-Sender Error Estimate  u16
    38  MBZ                            u16
    40  Ses-Sender TTL                 u8    TTL / hop limit the reflector received
    41  MBZ                            3 octets

A TWAMP-light reflector's packet ends at the TTL (41 octets); some (twampy's) even omit
MBZ and TTL and answer 38 octets, which is therefore the shortest answer accepted.

Timestamps are kept as the raw 64-bit field (what goes on the wire, compared exactly to
match an answer to the packet sent) and converted to Unix nanoseconds for arithmetic.
NTP seconds wrap in February 2036: a seconds field below 2^31 is read as the next era
(RFC 4330 §3), which is right from 1968 to 2104.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

SENDER_HEADER = 44
REFLECTOR_HEADER = 44
#: TWAMP-light's reflected packet, up to and including the Ses-Sender TTL.
TWAMP_REFLECTOR_HEADER = 41
#: The shortest answer that still carries the sender's timestamp and error estimate.
MIN_REFLECTED = 38
#: The shortest request a reflector answers: its answer needs 41 octets, and answering
#: a shorter request with more than it received would make the reflector an amplifier.
MIN_REFLECTABLE = TWAMP_REFLECTOR_HEADER

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_NS = 1_000_000_000
_ERA = 1 << 32

_SENDER = struct.Struct("!IQHH")  # seq, timestamp, error estimate, SSID
_REFLECTOR = struct.Struct("!IQHHQIQHHB")  # through the TTL (41 octets)
_REFLECTED_MIN = struct.Struct("!IQHHQIQH")  # through the sender's error estimate (38)


class PacketError(ValueError):
    """A datagram that is not a STAMP packet; ``kind`` is the counter it goes to."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "truncated" or "malformed"


# ---------------------------------------------------------------------------- timestamps


def ntp_from_ns(unix_ns: int) -> int:
    """The 64-bit NTP timestamp (seconds since 1900 . 32-bit fraction) of a Unix time in ns."""
    seconds, rest = divmod(unix_ns, _NS)
    return (((seconds + NTP_UNIX_OFFSET) % _ERA) << 32) | ((rest << 32) // _NS)


def ns_from_ntp(value: int) -> int:
    """Unix nanoseconds of a 64-bit NTP timestamp (era 1 for seconds below 2^31)."""
    seconds = value >> 32
    if seconds < 1 << 31:
        seconds += _ERA
    return (seconds - NTP_UNIX_OFFSET) * _NS + (((value & 0xFFFFFFFF) * _NS) >> 32)


def ptp_from_ns(unix_ns: int) -> int:
    """PTPv2 truncated (32-bit seconds since 1970 . 32-bit nanoseconds), for Z = 1."""
    seconds, rest = divmod(unix_ns, _NS)
    return ((seconds % _ERA) << 32) | rest


def ns_from_ptp(value: int) -> int:
    return (value >> 32) * _NS + min(value & 0xFFFFFFFF, _NS - 1)


def ns_from_timestamp(value: int, error_estimate: int) -> int:
    """Unix ns of a timestamp field, in the format its error estimate's Z bit names."""
    return ns_from_ptp(value) if error_estimate & 0x4000 else ns_from_ntp(value)


# ---------------------------------------------------------------------------- error estimate


@dataclass(frozen=True, slots=True)
class ErrorEstimate:
    """The Error Estimate field (RFC 4656 §4.1.2, RFC 8762 §4.2.1).

    ``S`` says the clock is synchronized to UTC, ``Z`` that timestamps are PTPv2 rather
    than NTP; the error is Multiplier × 2^(Scale − 32) seconds. A multiplier of zero is
    forbidden by RFC 4656 yet sent by some implementations: :attr:`seconds` is then None.
    """

    synchronized: bool
    ptp: bool
    scale: int
    multiplier: int

    @classmethod
    def decode(cls, value: int) -> ErrorEstimate:
        return cls(bool(value & 0x8000), bool(value & 0x4000), (value >> 8) & 0x3F, value & 0xFF)

    def encode(self) -> int:
        return (
            (0x8000 if self.synchronized else 0)
            | (0x4000 if self.ptp else 0)
            | (self.scale & 0x3F) << 8
            | (self.multiplier & 0xFF)
        )

    @property
    def seconds(self) -> float | None:
        return self.multiplier * 2.0 ** (self.scale - 32) if self.multiplier else None

    @classmethod
    def for_seconds(cls, seconds: float, *, synchronized: bool, ptp: bool = False) -> ErrorEstimate:
        """The smallest representable estimate that is not below ``seconds``."""
        units = max(seconds, 0.0) * 2.0**32
        scale = 0 if units <= 255 else min(63, math.ceil(math.log2(units / 255)))
        multiplier = min(255, max(1, math.ceil(units / 2.0**scale)))
        return cls(synchronized, ptp, scale, multiplier)


# ---------------------------------------------------------------------------- sender packets


@dataclass(frozen=True, slots=True)
class SenderPacket:
    seq: int
    timestamp: int
    error_estimate: int
    ssid: int
    length: int


def pack_sender_into(
    buffer: bytearray, seq: int, timestamp: int, error_estimate: int, ssid: int = 0
) -> None:
    """Write a Session-Sender header at the start of ``buffer`` (its padding stays)."""
    _SENDER.pack_into(buffer, 0, seq & 0xFFFFFFFF, timestamp, error_estimate, ssid)


def sender_packet(
    seq: int, timestamp: int, error_estimate: int, *, size: int = SENDER_HEADER, ssid: int = 0
) -> bytes:
    """A whole Session-Sender packet of ``size`` octets (zero padding)."""
    if size < SENDER_HEADER:
        raise ValueError(f"a STAMP test packet has at least {SENDER_HEADER} octets, not {size}")
    buffer = bytearray(size)
    pack_sender_into(buffer, seq, timestamp, error_estimate, ssid)
    return bytes(buffer)


def parse_sender(data: bytes) -> SenderPacket:
    """A Session-Sender packet as a reflector reads it.

    Only the first 14 octets mean anything to a TWAMP-light reflector, so padding,
    MBZ octets and TLVs are not checked: a reflector must answer TWAMP-light senders
    whose "MBZ" area carries padding.
    """
    if len(data) < _SENDER.size:
        raise PacketError(
            "truncated", f"{len(data)} octets: a STAMP test packet has at least 14"
        )
    seq, timestamp, error, ssid = _SENDER.unpack_from(data)
    return SenderPacket(seq, timestamp, error, ssid, len(data))


# ---------------------------------------------------------------------------- reflected packets


@dataclass(frozen=True, slots=True)
class ReflectedPacket:
    seq: int
    timestamp: int  # T3, the reflector's send time
    error_estimate: int
    ssid: int
    receive_timestamp: int  # T2
    sender_seq: int
    sender_timestamp: int  # T1, as the sender wrote it
    sender_error_estimate: int
    sender_ttl: int | None  # None when the answer stops before the TTL (38-40 octets)
    length: int


def parse_reflected(data: bytes) -> ReflectedPacket:
    """A Session-Reflector packet as the sender reads it; PacketError when too short."""
    length = len(data)
    if length < MIN_REFLECTED:
        raise PacketError(
            "truncated",
            f"{length} octets: a reflected STAMP packet has at least {MIN_REFLECTED}",
        )
    if length >= TWAMP_REFLECTOR_HEADER:
        seq, ts, err, ssid, rx, sseq, sts, serr, _mbz, ttl = _REFLECTOR.unpack_from(data)
        return ReflectedPacket(seq, ts, err, ssid, rx, sseq, sts, serr, ttl, length)
    seq, ts, err, ssid, rx, sseq, sts, serr = _REFLECTED_MIN.unpack_from(data)
    return ReflectedPacket(seq, ts, err, ssid, rx, sseq, sts, serr, None, length)


def reflect(
    request: bytes,
    *,
    seq: int,
    receive_timestamp: int,
    timestamp: int,
    error_estimate: int,
    ttl: int,
) -> bytes:
    """The answer to ``request``: same length (RFC 8762 symmetric size, RFC 6038).

    The request's octets after the 44-octet header (padding, TLVs) are returned as they
    came; a request of 41-43 octets (a TWAMP-light sender with symmetric padding) gets
    the reflected header cut to its length, which drops only MBZ octets. Shorter
    requests are refused: PacketError("truncated").
    """
    length = len(request)
    if length < MIN_REFLECTABLE:
        raise PacketError(
            "truncated",
            f"{length} octets: answering needs {MIN_REFLECTABLE}, more than was received",
        )
    sseq, sts, serr, ssid = _SENDER.unpack_from(request)
    header = _REFLECTOR.pack(
        seq & 0xFFFFFFFF, timestamp, error_estimate, ssid, receive_timestamp,
        sseq, sts, serr, 0, ttl & 0xFF,
    )  # fmt: skip
    header += b"\0\0\0"  # the MBZ octets after the TTL: 44 octets
    if length >= REFLECTOR_HEADER:
        return header + request[REFLECTOR_HEADER:]
    return header[:length]
