"""What readers are shown of the vantage: its name, its shard and its health, frozen.

The daemon's snapshot carries it (``Snapshot.vantage``), so /metrics reads the vantage's
health from the same immutable picture as the sites, never from live state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridgemon.events import ZONE


@dataclass(frozen=True, slots=True)
class VantageFigures:
    name: str
    shard: str  # "N/M"; "1/1" when the daemon probes the whole inventory
    anchors: tuple[tuple[str, bool], ...] = ()  # (anchor, answered in its latest probe)
    up: bool = True  # False while isolated
    isolated_since: float | None = None  # Unix time; None while not isolated


@dataclass(frozen=True, slots=True)
class Failures:
    """Of the sites probed at least once: how many fail now, and of the top ones."""

    failing: int = 0
    probed: int = 0
    top_failing: int = 0
    top_probed: int = 0

    def counting(self, up: bool | None, top: bool, sign: int = 1) -> Failures:
        """These counts with one site's latest burst (``up``) added, or taken out
        (``sign=-1``); a site never probed (``up`` None) does not count."""
        if up is None:
            return self
        failing = sign * (not up)
        return Failures(self.failing + failing, self.probed + sign,
                        self.top_failing + failing * top, self.top_probed + sign * top)


def clock_time(when: float | None) -> str | None:
    """``when`` as the people reading the reason tell the time ("08:02", in Vietnam)."""
    return None if when is None else datetime.fromtimestamp(when, ZONE).strftime("%H:%M")
