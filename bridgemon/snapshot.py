"""An immutable picture of the monitor at one instant, for everything that reads it.

/metrics, /healthz, /api/v1/sites, /api/v1/events and the status page read a Snapshot;
none of them reaches into live state or judges anything. Each site's part (``SiteView``)
was judged and rendered once, when its round completed (``bridgemon.board``), so reading
costs a join, not a judgement, and nothing a client asks for can stall the engine's loop.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from bridgemon.events import Event
from bridgemon.inventory import Inventory
from bridgemon.probes.result import ProbeResult
from bridgemon.readiness import Verdict
from bridgemon.testrun_schema import Report
from bridgemon.trend import Trend
from bridgemon.vantage_view import VantageFigures


@dataclass(frozen=True, slots=True)
class SiteView:
    """One site as every reader sees it, prepared when its verdict last changed."""

    verdict: Verdict
    latest: tuple[ProbeResult, ...]  # its checks' results in the latest round
    echoes: tuple[int, int]  # (sent, received) since it was added or re-addressed
    series: tuple[bytes, ...]  # its /metrics lines, one chunk per metrics.SITE_FAMILIES
    row: bytes  # its object in /api/v1/sites, as JSON
    since: float = 0.0  # when its verdict's state last changed (epoch seconds)
    # Its last hours (live, not frozen: copy with Trend.points on the loop).
    trend: Trend = field(default_factory=Trend, compare=False)


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
    receive_drops: int = 0
    kernel_filtered: bool = True


class Quarantined(TypedDict):
    """An events file set aside at start (testrun.saved_events; /healthz lists them)."""

    file: str
    moved_to: str | None  # None: it could not even be moved
    kept: int  # good events written back in its place
    problems: list[str]


@dataclass(frozen=True, slots=True)
class HttpFigures:
    connections: int = 0  # open now
    refused: int = 0  # turned away because max_connections were open
    abandoned: int = 0  # aborted: the client took nothing of its answer for send_timeout


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
    sites: Mapping[str, SiteView]  # a frozen copy: every site of the inventory
    order: tuple[str, ...]  # site ids, parents before children (inventory.walk order)
    rounds: tuple[RoundFigures, ...]
    pinger: PingerFigures
    reload: ReloadFigures
    events: tuple[Event, ...] = ()
    latest_runs: dict[str, Report] | None = None  # event id -> its latest test-run report
    event_window: float = 7 * 86400.0
    loop_lag: float = 0.0  # worst event-loop lag in the last window, seconds
    quarantined: tuple[Quarantined, ...] = ()  # saved events files set aside at start
    http: HttpFigures = HttpFigures()
    # The ids this daemon exports (a shard's own sites; the roots it probes only to judge
    # parent_down are not among them); None: every site of the inventory.
    exported: frozenset[str] | None = None
    vantage: VantageFigures | None = None  # None: no vantage label, no vantage families

    @property
    def exported_ids(self) -> Collection[str]:
        return self.inventory.sites if self.exported is None else self.exported

    def verdict(self, site_id: str) -> Verdict | None:
        view = self.sites.get(site_id)
        return view.verdict if view is not None else None
