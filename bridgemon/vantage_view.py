"""What readers are shown of the vantage: its name, its shard and its health, frozen.

The daemon's snapshot carries it (``VantageSnapshot``), so /metrics reads the vantage's
health from the same immutable picture as the sites, never from live state.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridgemon.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class VantageFigures:
    name: str
    shard: str  # "N/M"; "1/1" when the daemon probes the whole inventory
    anchors: tuple[tuple[str, bool], ...] = ()  # (anchor, answered in its latest probe)
    up: bool = True  # False while isolated
    isolated_since: float | None = None  # Unix time; None while not isolated


@dataclass(frozen=True, slots=True)
class VantageSnapshot(Snapshot):
    vantage: VantageFigures | None = None
