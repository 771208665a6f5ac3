"""What a packet train is: its target, bitrate, packet size, duration, DSCP, and the
bounds every train stays within, checked when the train is described (so a bad profile
or URL is refused before anything is sent).

Rates are counted on the wire at the IP layer: the STAMP packet (``size`` octets of UDP
payload) plus the UDP and IP headers (28 octets over IPv4, 48 over IPv6). A 2 Mbit/s
train of 1200-octet packets over IPv4 sends one packet every 4.912 ms (203.6 packets/s),
which is what a bottleneck of 2 Mbit/s carries.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Literal

from bridgemon.stamp.packets import SENDER_HEADER
from bridgemon.stamp.units import dscp_name, format_rate

DEFAULT_PORT = 862  # IANA "twamp-test", STAMP's default (RFC 8762 §4.1)
DEFAULT_RATE_BPS = 2_000_000.0
DEFAULT_SIZE = 1200
DEFAULT_DURATION = 10.0
DEFAULT_DSCP = 34  # AF41: multimedia conferencing (RFC 4594)
DEFAULT_WAIT = 1.0

MIN_RATE_BPS = 8_000.0
MAX_RATE_BPS = 100_000_000.0
#: UDP payload: up to a 9000-octet jumbo frame over IPv4. Larger packets than the path's
#: MTU are sent with DF set, so they show up as an MTU problem, not as fragments.
MAX_SIZE = 8972
MAX_DURATION = 60.0
MIN_PACKETS = 10
MAX_PACKETS = 100_000
MAX_BYTES = 150_000_000
MAX_WAIT = 10.0

IPV4_OVERHEAD = 28
IPV6_OVERHEAD = 48

ReflectorMode = Literal["auto", "stateful", "stateless"]
REFLECTOR_MODES: tuple[str, ...] = ("auto", "stateful", "stateless")


@dataclass(frozen=True, slots=True)
class TrainPlan:
    """The train as it will be sent over one address family."""

    packets: int
    interval: float  # seconds between packets
    wire_size: int  # octets per packet on the wire (IP layer)

    @property
    def wire_bytes(self) -> int:
        return self.packets * self.wire_size


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """One STAMP train. Construction validates; ValueError names the field at fault.

    ``wait`` is how long answers are still awaited after the last packet is sent.
    ``reflector`` says whether the reflector keeps its own sequence numbers (stateful:
    loss per direction) or copies ours (stateless: round-trip loss only); ``auto`` infers it.
    """

    host: str
    port: int = DEFAULT_PORT
    rate_bps: float = DEFAULT_RATE_BPS
    size: int = DEFAULT_SIZE
    duration: float = DEFAULT_DURATION
    dscp: int = DEFAULT_DSCP
    reflector: ReflectorMode = "auto"
    wait: float = DEFAULT_WAIT

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise ValueError("host: empty; give the reflector's address or name")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r}: must be 1-65535")
        if not MIN_RATE_BPS <= self.rate_bps <= MAX_RATE_BPS:
            raise ValueError(
                f"rate {format_rate(self.rate_bps)}: must be between "
                f"{format_rate(MIN_RATE_BPS)} and {format_rate(MAX_RATE_BPS)}"
            )
        if not isinstance(self.size, int) or not SENDER_HEADER <= self.size <= MAX_SIZE:
            raise ValueError(
                f"size {self.size!r}: a STAMP packet is {SENDER_HEADER}-{MAX_SIZE} octets "
                "of UDP payload (1200 is typical of video)"
            )
        if not (math.isfinite(self.duration) and 0 < self.duration <= MAX_DURATION):
            raise ValueError(f"duration {self.duration!r} s: must be more than 0 and at most "
                             f"{MAX_DURATION:g} s")
        if not isinstance(self.dscp, int) or not 0 <= self.dscp <= 63:
            raise ValueError(f"dscp {self.dscp!r}: a code point is 0-63")
        if self.reflector not in REFLECTOR_MODES:
            raise ValueError(
                f"reflector {self.reflector!r}: one of {', '.join(REFLECTOR_MODES)}"
            )
        if not (math.isfinite(self.wait) and 0 < self.wait <= MAX_WAIT):
            raise ValueError(f"wait {self.wait!r} s: must be more than 0 and at most "
                             f"{MAX_WAIT:g} s")
        # The bounds in packets and bytes hold for both families (IPv6 only adds overhead).
        for ipv6 in (False, True):
            plan = self.plan(ipv6=ipv6)
            what = (f"a {format_rate(self.rate_bps)} train of {self.size}-octet packets for "
                    f"{self.duration:g} s")
            if plan.packets < MIN_PACKETS:
                raise ValueError(
                    f"duration: {what} is only {plan.packets} packets; at least "
                    f"{MIN_PACKETS} are needed (longer duration, higher rate or smaller size)"
                )
            if plan.packets > MAX_PACKETS or plan.wire_bytes > MAX_BYTES:
                raise ValueError(
                    f"duration: {what} is {plan.packets:,} packets, {plan.wire_bytes:,} "
                    f"octets; the limit is {MAX_PACKETS:,} packets and {MAX_BYTES:,} octets"
                )

    @property
    def ipv6_literal(self) -> bool:
        try:
            return ipaddress.ip_address(self.host.strip("[]")).version == 6
        except ValueError:
            return False

    def plan(self, *, ipv6: bool = False) -> TrainPlan:
        wire = self.size + (IPV6_OVERHEAD if ipv6 else IPV4_OVERHEAD)
        interval = wire * 8 / self.rate_bps
        packets = max(1, round(self.duration / interval))
        return TrainPlan(packets=packets, interval=interval, wire_size=wire)

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def describe(self) -> str:
        """``2 Mbit/s × 10 s, 1200 B, AF41`` (for logs and reports)."""
        return (f"{format_rate(self.rate_bps)} × {self.duration:g} s, {self.size} B, "
                f"{dscp_name(self.dscp)}")
@dataclass(frozen=True, slots=True)
class StampThresholds:
    """Limits of a stamp check's train; "good" → degraded beyond it, "bad" → not ready.

    Defaults: loss 1 % / 5 % per direction (video without FEC shows artefacts from about
    1 %); one-way jitter 20 / 50 ms; round-trip delay p95 300 / 800 ms (ITU-T G.114's
    150 ms one way, twice); the rate carried at least 95 % / 80 % of the rate offered;
    the G.1070 score at least 3.5 / 2.5. ``pacing_p99``: above it the monitor's own
    send-time error makes a note. ``invalid_ratio``: invalid answers above this share of
    the packets sent make the reflector's behaviour a reason. A profile's check table
    may set the first ten (``STAMP_THRESHOLD_KEYS``); the last two are the monitor's.
    Kept here, with what a train is, not in stamp.verdict: specs.StampSpec carries them
    and the loader may not import the probes.
    """

    loss_good: float = 0.01
    loss_bad: float = 0.05
    jitter_good: float = 0.020
    jitter_bad: float = 0.050
    rtt_good: float = 0.300
    rtt_bad: float = 0.800
    carried_good: float = 0.95
    carried_bad: float = 0.80
    mos_good: float = 3.5
    mos_bad: float = 2.5
    pacing_p99: float = 0.001
    invalid_ratio: float = 0.01

    def __post_init__(self) -> None:
        for name in type(self).__dataclass_fields__:
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} {value!r}: must be a finite number ≥ 0")
        for low, high in STAMP_THRESHOLD_PAIRS:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")


#: (the lower, the higher) of each pair: "good" below "bad" for what grows worse (loss,
#: jitter, delay), "bad" below "good" for what shrinks worse (rate carried, MOS).
STAMP_THRESHOLD_PAIRS: tuple[tuple[str, str], ...] = (
    ("loss_good", "loss_bad"), ("jitter_good", "jitter_bad"), ("rtt_good", "rtt_bad"),
    ("carried_bad", "carried_good"), ("mos_bad", "mos_good"),
)
STAMP_THRESHOLD_KEYS: tuple[str, ...] = (
    "loss_good", "loss_bad", "jitter_good", "jitter_bad", "rtt_good", "rtt_bad",
    "carried_good", "carried_bad", "mos_good", "mos_bad",
)
