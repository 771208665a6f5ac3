"""Resolved, immutable probe and judgement settings of one site.

The configuration layer builds these (built-in defaults ← profile ← site overrides);
probes and readiness only read them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    count: int = 5
    spacing: float = 0.2
    timeout: float = 1.0
    size: int = 56

    @property
    def duration(self) -> float:
        """How long one burst can take: the last echo goes out, then waits its timeout."""
        return (self.count - 1) * self.spacing + self.timeout


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Video thresholds. Within every *_good: ready; past any *_bad: not ready."""

    rtt_good: float = 0.150
    rtt_bad: float = 0.300
    jitter_good: float = 0.030
    jitter_bad: float = 0.050
    loss_good: float = 0.01
    loss_bad: float = 0.05
