"""Is the vantage cut off? Its anchors and its isolation, decided in one place.

When the monitoring server's own link fails, every site stops answering at once; judging
them not_ready would page hundreds of technicians for a fault in the monitor's own rack.
Each round the daemon probes its anchors (targets that answer whenever the vantage can see
the world; optionally its default gateway) through the same ICMP engine as the sites, and
decides here, in one place, whether it is isolated:

- every anchor fails, or
- ``isolated_share`` of the probed sites fail while their parents fail too, up to the top
  of the tree: that share of the sites and that share of the top sites (the provinces).
  One district down with its communes is not taken for the monitor's own link, however
  many communes it has: the province above it answers.

The decision is data handed to the board (``Board.isolate``): while isolated, failing
sites are judged ``unknown`` (``readiness.judge_isolated``) and the verdicts recover by
themselves when the anchors answer again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from bridgemon.config import VantageSettings
from bridgemon.inventory import Inventory
from bridgemon.probes import ProbeContext
from bridgemon.probes.icmp import probe as probe_icmp
from bridgemon.snapshot import SiteView
from bridgemon.specs import IcmpSpec
from bridgemon.vantage_view import Failures, VantageFigures

log = logging.getLogger(__name__)

ROUTES = Path("/proc/net/route")
_RTF_GATEWAY = 0x2
# Three echoes, the last one waited for a second: an anchor is probed in under 1.5 s.
ANCHOR_ICMP = IcmpSpec(count=3, spacing=0.2, timeout=1.0)


def default_gateway(routes: Path = ROUTES) -> str | None:
    """The IPv4 default gateway from the kernel's routing table, or None (none, or the
    table unreadable). Its fields are hex, the address in host (little-endian) order."""
    try:
        lines = routes.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[1] != "00000000":
            continue
        try:
            flags, gateway = int(fields[3], 16), int(fields[2], 16)
        except ValueError:
            continue
        if flags & _RTF_GATEWAY and gateway:
            return str(ipaddress.IPv4Address(gateway.to_bytes(4, "little")))
    return None


def is_isolated(anchors_up: Sequence[bool], failures: Failures, share: float | None) -> bool:
    """The decision, pure: all anchors silent, or ``share`` of the probed sites failing
    and ``share`` of the top sites with them."""
    if anchors_up and not any(anchors_up):
        return True
    return (share is not None and failures.top_probed > 0
            and failures.failing >= share * failures.probed
            and failures.top_failing >= share * failures.top_probed)


def count_failures(inventory: Inventory, views: Mapping[str, SiteView]) -> Failures:
    """What the latest bursts say, site by site (a site never probed does not count): the
    board keeps the same counts as it publishes (``Board.failures``); this is their
    definition, and what tests check the board against."""
    failures = Failures()
    top = set(inventory.roots)
    for site_id, view in views.items():
        failures = failures.counting(view.verdict.up, site_id in top)
    return failures


class VantageWatch:
    """The anchors' latest answers and the isolation decided from them and the board."""

    def __init__(self, settings: VantageSettings, shard: str,
                 routes: Path = ROUTES) -> None:
        self.settings = settings
        self.shard = shard
        gateway = default_gateway(routes) if settings.gateway else None
        self.anchors: tuple[str, ...] = (*settings.anchors,
                                         *((gateway,) if gateway is not None else ()))
        self.answered: dict[str, bool] = {}
        self.isolated_since: float | None = None

    async def probe_anchors(self, ctx: ProbeContext) -> None:
        results = await asyncio.gather(
            *(probe_icmp(anchor, ANCHOR_ICMP, ctx) for anchor in self.anchors))
        self.answered = {anchor: result.ok for anchor, result in zip(self.anchors, results,
                                                                     strict=True)}

    def decide(self, failures: Failures, now: float) -> bool:
        """Update ``isolated_since`` from the anchors and the board's ``failures``; True
        when it changed."""
        isolated = is_isolated(tuple(self.answered.values()), failures,
                               self.settings.isolated_share)
        if isolated == (self.isolated_since is not None):
            return False
        self.isolated_since = now if isolated else None
        if isolated:
            log.warning("vantage %s is cut off: anchors %s, %d of %d sites failing (%d of "
                        "%d top sites); failing sites are judged unknown",
                        self.settings.name, self.answered or "none", failures.failing,
                        failures.probed, failures.top_failing, failures.top_probed)
        else:
            log.warning("vantage %s sees the world again", self.settings.name)
        return True

    def figures(self) -> VantageFigures:
        return VantageFigures(
            self.settings.name, self.shard,
            tuple((anchor, self.answered.get(anchor, False)) for anchor in self.anchors
                  if anchor in self.answered),
            self.isolated_since is None, self.isolated_since,
        )
