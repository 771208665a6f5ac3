"""Probes: one module per protocol, each ``async probe(target, spec, ctx) -> ProbeResult``,
and ``site.probe_site``, which runs every check of one site.

A probe measures and returns data. It never touches windows, metrics or readiness, and it
never raises for anything the network does: failures are results with a reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bridgemon.probes.pinger import Pinger
from bridgemon.stamp.budget import BandwidthBudget
from bridgemon.stamp.pmtu import PmtuSockets

#: What all packet trains of one process may send at once: ten 2 Mbit/s trains. A test
#: run of 260 sites must measure the sites, not the monitor's own uplink; trains beyond
#: it wait their turn (bounded) and then fail with the budget as their reason.
TRAIN_BUDGET_BPS = 20_000_000.0


class ProbeSettings(Protocol):
    """What the probes take from ``[monitor]`` (config.MonitorSettings has it)."""

    @property
    def icmp_mode(self) -> Literal["auto", "raw", "dgram"]: ...
    @property
    def resolve_timeout(self) -> float: ...
    @property
    def check_sockets(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """Shared resources the probes of one process use.

    ``sockets`` bounds how many service-check sockets are open at once across the whole
    process (each check holds one slot from before it connects until it has closed).
    """

    pinger: Pinger
    resolve_timeout: float = 2.0
    sockets: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(512))
    trains: BandwidthBudget = field(default_factory=lambda: BandwidthBudget(TRAIN_BUDGET_BPS))
    pmtu: PmtuSockets = field(default_factory=PmtuSockets)  # path MTU probes' socket

    @classmethod
    def from_settings(cls, settings: ProbeSettings) -> ProbeContext:
        """The context ``settings`` describe, with an ICMP engine of their mode; the caller
        opens it (``pinger.check()``, which raises PingerUnavailable without privileges)
        and closes it."""
        return cls(
            pinger=Pinger(settings.icmp_mode),
            resolve_timeout=settings.resolve_timeout,
            sockets=asyncio.Semaphore(settings.check_sockets),
        )
