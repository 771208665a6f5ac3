"""Probes: one module per protocol, each ``async probe(target, spec, ctx) -> ProbeResult``.

A probe measures and returns data. It never touches state, metrics or readiness, and it
never raises for anything the network does: failures are results with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridgemon.probes.pinger import Pinger


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """Shared resources the probes of one process use."""

    pinger: Pinger
    resolve_timeout: float = 2.0
