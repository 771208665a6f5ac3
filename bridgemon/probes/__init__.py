"""Probes: one module per protocol, each ``async probe(target, spec, ctx) -> ProbeResult``.

A probe measures and returns data. It never touches state, metrics or readiness, and it
never raises for anything the network does: failures are results with a reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bridgemon.probes.pinger import Pinger


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """Shared resources the probes of one process use.

    ``sockets`` bounds how many service-check sockets are open at once across the whole
    process (each check holds one slot from before it connects until it has closed).
    """

    pinger: Pinger
    resolve_timeout: float = 2.0
    sockets: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(512))
