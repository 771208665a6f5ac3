"""ICMP echo burst check: RTT, loss and jitter of the path to a site."""

from __future__ import annotations

import time

from bridgemon.probes import ProbeContext
from bridgemon.probes.resolve import ResolveError, resolve
from bridgemon.probes.result import EchoBurst, ProbeResult
from bridgemon.specs import IcmpSpec


async def probe(target: str, spec: IcmpSpec, ctx: ProbeContext) -> ProbeResult:
    """One burst of ``spec.count`` echoes to ``target`` (IP or host name)."""
    started_wall = time.time()
    started = time.monotonic()
    try:
        address = await resolve(target, ctx.resolve_timeout)
    except ResolveError as exc:
        return ProbeResult(
            check="icmp",
            kind="icmp",
            target=target,
            ok=False,
            started_at=started_wall,
            duration=time.monotonic() - started,
            reason=str(exc),
            burst=EchoBurst(target, (), str(exc)),
        )
    burst = await ctx.pinger.burst(
        address, count=spec.count, spacing=spec.spacing, timeout=spec.timeout, size=spec.size
    )
    return result_of(address, spec, burst, started_wall, time.monotonic() - started)


def result_of(address: str, spec: IcmpSpec, burst: EchoBurst, started_at: float,
              duration: float) -> ProbeResult:
    """The check's result for a burst to ``address`` (shared with ``site.start_icmp``)."""
    ok = burst.received > 0
    reason = None
    if not ok:
        reason = burst.error or f"no reply to {burst.sent} echoes within {spec.timeout:g} s"
    elif burst.error:
        reason = burst.error
    return ProbeResult(
        check="icmp",
        kind="icmp",
        target=address,
        ok=ok,
        started_at=started_at,
        duration=duration,
        reason=reason,
        burst=burst,
    )
