"""Per-site sliding windows of probe rounds: what the monitor remembers.

The scheduler appends one ``SiteRound`` per site per round; readiness and exposition
read. A reload keeps the windows of sites whose measurement did not change, restarts the
ones that did, and forgets removed sites so their series vanish from /metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridgemon.inventory import Inventory
from bridgemon.probes.result import ProbeResult


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


@dataclass(slots=True)
class SiteHistory:
    key: tuple[object, ...]
    # A tuple, replaced per round: 96 bytes for a window of five where a deque takes ~700,
    # and readers get an immutable window without copying it.
    rounds: tuple[SiteRound, ...] = ()
    echoes_sent: int = 0
    echoes_received: int = 0
    rounds_total: int = 0


@dataclass
class StateStore:
    window: int
    sites: dict[str, SiteHistory] = field(default_factory=dict)
    version: int = 0

    def sync(self, inventory: Inventory, window: int) -> None:
        """Match the store to a (new) inventory: keep what is still valid."""
        kept: dict[str, SiteHistory] = {}
        for site in inventory.sites.values():
            key = site.probe_key()
            history = self.sites.get(site.id)
            if history is None or history.key != key:
                history = SiteHistory(key=key)
            elif len(history.rounds) > window:
                history.rounds = history.rounds[len(history.rounds) - window:]
            kept[site.id] = history
        self.sites = kept
        self.window = window
        self.version += 1

    def record(self, site_id: str, key: tuple[object, ...], site_round: SiteRound) -> bool:
        """Append a round to the site's window; False if the round no longer applies."""
        history = self.sites.get(site_id)
        if history is None or history.key != key:
            return False  # removed or re-addressed by a reload while its probe was in flight
        rounds = history.rounds
        if len(rounds) >= self.window:
            rounds = rounds[len(rounds) - self.window + 1:]
        history.rounds = (*rounds, site_round)
        history.rounds_total += 1
        for result in site_round.results:
            if result.burst is not None:
                history.echoes_sent += result.burst.sent
                history.echoes_received += result.burst.received
        self.version += 1
        return True

    def rounds(self, site_id: str) -> tuple[SiteRound, ...]:
        history = self.sites.get(site_id)
        return history.rounds if history is not None else ()
