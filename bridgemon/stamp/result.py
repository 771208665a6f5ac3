"""What a train returns: plain, immutable data (JSON through :meth:`TrainResult.to_dict`).

Like every probe's result it carries no verdict: :mod:`bridgemon.stamp.verdict` judges it
against thresholds, and nothing here touches metrics or state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bridgemon.stamp.analysis import PathFigures
from bridgemon.stamp.train import TrainSpec
from bridgemon.stamp.units import dscp_name

ErrorKind = Literal["budget", "resolve", "socket", "timeout"]


@dataclass(frozen=True, slots=True)
class Anomalies:
    """Datagrams that were not usable answers, and what the network said about ours.

    ``unmatched``: the right size from the right address, but answering no packet we
    sent (wrong sender number or timestamp: garbage, or a reflector mangling them).
    ``icmp``: ICMP errors about our packets by kind (``port_unreachable``,
    ``frag_needed``, ``host_unreachable``, ``net_unreachable``, ``prohibited``,
    ``ttl_exceeded``, ``local_msgsize``, ``other``).
    """

    truncated: int = 0
    oversized: int = 0
    unmatched: int = 0
    foreign: int = 0
    foreign_source: str | None = None
    icmp: dict[str, int] = field(default_factory=dict)
    path_mtu: int | None = None
    send_errors: int = 0
    send_error: str | None = None
    flood: bool = False

    @property
    def invalid(self) -> int:
        return self.truncated + self.oversized + self.unmatched

    def to_dict(self) -> dict[str, Any]:
        return {
            "truncated": self.truncated,
            "oversized": self.oversized,
            "unmatched": self.unmatched,
            "foreign": self.foreign,
            "foreign_source": self.foreign_source,
            "icmp": dict(self.icmp),
            "path_mtu": self.path_mtu,
            "send_errors": self.send_errors,
            "send_error": self.send_error,
            "flood": self.flood,
        }


@dataclass(frozen=True, slots=True)
class Pacing:
    """How well the sender kept the train's schedule (send time − due time, seconds).

    Early sends are negative: the pacer sends what is due within its lead (the timer
    lateness it has observed, up to a millisecond) rather than sleep through the event
    loop's millisecond timer granularity.
    """

    error_p50: float
    error_p99: float
    error_max: float  # the largest |error|
    sent_bps: float | None  # the rate actually offered, on the wire

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_p50_ms": round(self.error_p50 * 1000, 3),
            "error_p99_ms": round(self.error_p99 * 1000, 3),
            "error_max_ms": round(self.error_max * 1000, 3),
            "sent_bps": None if self.sent_bps is None else round(self.sent_bps),
        }


@dataclass(frozen=True, slots=True)
class TrainResult:
    spec: TrainSpec
    address: str | None  # the reflector's address the train went to
    started_at: float  # Unix time of the first packet (or of the attempt)
    elapsed: float  # seconds, from the first packet to the end of the wait
    planned: int  # packets in the plan
    sent: int  # packets handed to the kernel (the duplicate of packet 0 not counted)
    figures: PathFigures | None
    anomalies: Anomalies
    pacing: Pacing | None
    error: str | None = None  # the train could not run: why (English) ...
    error_vi: str | None = None  # ... and in Vietnamese
    error_kind: ErrorKind | None = None

    @property
    def answered(self) -> int:
        return 0 if self.figures is None else self.figures.round_trip.received

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "target": spec.target,
            "address": self.address,
            "rate_bps": round(spec.rate_bps),
            "size": spec.size,
            "duration_s": spec.duration,
            "dscp": dscp_name(spec.dscp),
            "started_at": self.started_at,
            "elapsed_s": round(self.elapsed, 3),
            "planned": self.planned,
            "sent": self.sent,
            "error": self.error,
            "error_vi": self.error_vi,
            "error_kind": self.error_kind,
            **({} if self.figures is None else self.figures.to_dict()),
            "anomalies": self.anomalies.to_dict(),
            "pacing": None if self.pacing is None else self.pacing.to_dict(),
        }
