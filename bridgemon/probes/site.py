"""Probing one site: every check of it at once, as one ``SiteRound``.

The one thing the rest of bridgemon asks of the probes: the daemon's rounds
(``scheduler.py``) and every test run call it, so a report and the dashboard measure a
site the same way.
"""

from __future__ import annotations

import asyncio
import time

from bridgemon.inventory import Site
from bridgemon.probes import ProbeContext
from bridgemon.probes.dispatch import run_check
from bridgemon.probes.result import SiteRound
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
