"""An immutable picture of the monitor at one instant, for everything that reads it.

/metrics, /api/v1/sites and reports render a Snapshot; none of them reaches into live
state, so a scrape is consistent and can be formatted off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridgemon.events import Event
from bridgemon.inventory import Inventory
from bridgemon.probes.result import ProbeResult
from bridgemon.readiness import Verdict


@dataclass(frozen=True, slots=True)
class RoundFigures:
    interval: float
    sites: int
    rounds: int
    overruns: int
    last_started: float
    last_duration: float


@dataclass(frozen=True, slots=True)
class PingerFigures:
    echoes_sent: int
    echoes_received: int
    stray_replies: int
    modes: dict[str, str]


@dataclass(frozen=True, slots=True)
class ReloadFigures:
    successful: bool
    last_attempt: float
    last_success: float
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    started_at: float
    inventory: Inventory
    verdicts: dict[str, Verdict]
    echo_counters: dict[str, tuple[int, int]]  # site -> (sent, received) since it was added
    latest: dict[str, tuple[ProbeResult, ...]]  # site -> its checks' results, latest round
    rounds: tuple[RoundFigures, ...]
    pinger: PingerFigures
    reload: ReloadFigures
    events: tuple[Event, ...] = ()
    latest_runs: dict[str, dict[str, Any]] | None = None  # event id -> latest test-run report
    event_window: float = 7 * 86400.0
