"""The path MTU probe as a check (``type = "mtu"`` in a profile, ``probes/dispatch.py``'s
row for :class:`MtuSpec`): :class:`PmtuResult` → the :class:`ProbeResult` every other
check returns, so the test-run report and readiness read it as they read a train.

Only ``ok`` passes. "Fragmentation needed", a black hole, this host's own MTU and a site
that answers no ping at all fail, each with its reason in English and Vietnamese
(``details["reason_vi"]``, which readiness words the site's reason with). A check that
cannot run here (no ICMP socket, a name with no IPv4 address) fails with that reason
rather than raising: the network's answers and this host's limits are results.
"""

from __future__ import annotations

import time

from bridgemon.probes import ProbeContext
from bridgemon.probes.resolve import ResolveError, resolve
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import MTU_ATTEMPTS, MTU_ECHO_TIMEOUT, MTU_SEARCH_STEPS, MtuSpec
from bridgemon.stamp.pmtu import PmtuError, PmtuResult, probe_pmtu

KIND = "mtu"


def mtu_check(result: PmtuResult, *, name: str, started_at: float,
              duration: float) -> ProbeResult:
    reason = result.reason
    details = result.to_dict()
    # The check's own reason is the one the report shows; the figures go alongside.
    del details["reason"]
    # A figure, not the ICMP check's min/avg/max/p95 object of the same name.
    details["echo_rtt_ms"] = details.pop("rtt_ms")
    details["state"] = result.state.value
    return ProbeResult(
        check=name,
        kind=KIND,
        target=result.address,
        ok=result.passed,
        started_at=started_at,
        duration=duration,
        reason=None if reason is None else reason[0],
        details=details,
    )


async def probe(target: str, spec: MtuSpec, ctx: ProbeContext) -> ProbeResult:
    """Full-size echoes with DF set to the site at ``target`` (an IPv4 address or a name)."""
    started_wall = time.time()
    started = time.monotonic()
    try:
        address = await resolve(target, ctx.resolve_timeout)
        result = await probe_pmtu(address, size=spec.size, timeout=MTU_ECHO_TIMEOUT,
                                  attempts=MTU_ATTEMPTS, search_steps=MTU_SEARCH_STEPS,
                                  mode=ctx.pinger.mode, share=ctx.pmtu)
    except (ResolveError, PmtuError) as exc:
        return ProbeResult(
            check=spec.name,
            kind=KIND,
            target=target,
            ok=False,
            started_at=started_wall,
            duration=time.monotonic() - started,
            reason=f"the path MTU check cannot run: {exc}",
            details={"size": spec.size, "state": "unknown",
                     "reason_vi": f"không chạy được kiểm tra MTU đường truyền: {exc}"},
        )
    return mtu_check(result, name=spec.name, started_at=started_wall,
                     duration=time.monotonic() - started)
