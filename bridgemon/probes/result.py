"""What a probe returns: plain, immutable data.

Probes build these and hand them back; they never touch state or metrics. Everything
downstream (windows, readiness, exposition, reports) reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EchoBurst:
    """The outcome of one ICMP burst to one address.

    ``rtts`` has one entry per echo sent, in send order: the round-trip time in seconds,
    or ``None`` when no reply came back in time (or an ICMP error came back instead).
    """

    address: str
    rtts: tuple[float | None, ...]
    error: str | None = None
    # Derived once here, read at every judgement of the window the burst sits in. Sums,
    # not lists: 60,000 bursts sit in the windows of a national inventory.
    received: int = field(init=False, compare=False, repr=False)
    jitter_sum: float = field(init=False, compare=False, repr=False)
    jitter_count: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        diffs = jitter_pairs(self.rtts)
        object.__setattr__(self, "received", sum(1 for r in self.rtts if r is not None))
        object.__setattr__(self, "jitter_sum", math.fsum(diffs))
        object.__setattr__(self, "jitter_count", len(diffs))

    @property
    def sent(self) -> int:
        return len(self.rtts)

    @property
    def replied(self) -> tuple[float, ...]:
        return tuple(r for r in self.rtts if r is not None)


@dataclass(frozen=True, slots=True)
class RttStats:
    """Summary of a set of RTTs, in seconds."""

    min: float
    avg: float
    max: float
    p95: float

    @classmethod
    def of(cls, rtts: list[float] | tuple[float, ...]) -> RttStats | None:
        if not rtts:
            return None
        ordered = sorted(rtts)
        return cls(
            min=ordered[0],
            avg=math.fsum(ordered) / len(ordered),
            max=ordered[-1],
            p95=percentile(ordered, 0.95),
        )


def percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted, non-empty list."""
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def jitter_pairs(rtts: tuple[float | None, ...]) -> list[float]:
    """Absolute differences of consecutive received RTTs (mtr's Javg definition).

    A lost echo does not break the chain: the difference is taken between the received
    echoes on either side of it, as mtr does.
    """
    diffs: list[float] = []
    previous: float | None = None
    for rtt in rtts:
        if rtt is None:
            continue
        if previous is not None:
            diffs.append(abs(rtt - previous))
        previous = rtt
    return diffs


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One check of one site in one round.

    ``check`` names the check as configured ("icmp", "sip", "https"...), ``kind`` the
    protocol. ``ok`` is the check's own pass/fail; readiness decides what it means for the
    site. ``reason`` says in words why it failed (or what is off when it passed).
    """

    check: str
    kind: str
    target: str
    ok: bool
    started_at: float
    duration: float
    reason: str | None = None
    burst: EchoBurst | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SiteRound:
    """Everything probed for one site in one round."""

    started_at: float
    results: tuple[ProbeResult, ...]

    def result(self, check: str) -> ProbeResult | None:
        for result in self.results:
            if result.check == check:
                return result
        return None
