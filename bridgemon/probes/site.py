"""Probing one site: every check of it at once, as one ``SiteRound``.

The one thing the rest of bridgemon asks of the probes: the daemon's rounds
(``scheduler.py``) and every test run call it, so a report and the dashboard measure a
site the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bridgemon.inventory import Site
from bridgemon.probes import ProbeContext, icmp
from bridgemon.probes.dispatch import run_check
from bridgemon.probes.pinger import BurstHandle
from bridgemon.probes.resolve import ip_literal
from bridgemon.probes.result import EchoBurst, SiteRound
from bridgemon.specs import in_rounds


async def probe_site(site: Site, ctx: ProbeContext, *, trains: bool = False) -> SiteRound:
    """The site's ICMP burst and its service checks, side by side.

    ``trains``: every packet train and MTU check too (test runs); without it, only those
    marked for the rounds (a train costs its bandwidth every time).
    """
    started = time.time()
    if not site.checks:  # the common case at scale: no gather, no extra tasks
        return SiteRound(started, (await run_check(site.address, site.icmp, ctx),))
    checks = [check for check in site.checks
              if trains or in_rounds(check)]
    results = await asyncio.gather(
        run_check(site.address, site.icmp, ctx),
        *(run_check(site.address, check, ctx) for check in checks),
    )
    return SiteRound(started_at=started, results=tuple(results))


def start_icmp(site: Site, ctx: ProbeContext,
               done: Callable[[SiteRound], None]) -> BurstHandle | None:
    """Start the round of a site that is one ICMP burst to an IP address, without a task.

    That is nearly every site of a national inventory, and a task, a future and the
    coroutines between them cost a tenth of the daemon's CPU at 12,000 sites. ``done``
    gets the SiteRound ``probe_site`` would have returned, outside the engine's tick;
    ``ctx.pinger.cancel`` on the handle gives the round up. For any other site nothing is
    started and the answer is None: it goes through ``probe_site``.
    """
    if any(in_rounds(check) for check in site.checks):
        return None
    address = ip_literal(site.address)
    if address is None:
        return None
    spec = site.icmp
    started = time.time()
    began = time.monotonic()

    def finished(burst: EchoBurst) -> None:
        result = icmp.result_of(address, spec, burst, started, time.monotonic() - began)
        done(SiteRound(started_at=started, results=(result,)))

    return ctx.pinger.start(address, finished, count=spec.count, spacing=spec.spacing,
                            timeout=spec.timeout, size=spec.size)
