"""One entry point for every kind of check: spec type -> the probe module that runs it."""

from __future__ import annotations

import logging
import time

from bridgemon.probes import ProbeContext, http, icmp, sip, tcp
from bridgemon.probes.result import EchoBurst, ProbeResult
from bridgemon.specs import CheckSpec, HttpSpec, IcmpSpec, SipSpec, TcpSpec

log = logging.getLogger(__name__)


async def run_check(target: str, spec: CheckSpec | IcmpSpec, ctx: ProbeContext) -> ProbeResult:
    """Run one check; a bug in a probe costs that one result, never the round."""
    started = time.time()
    try:
        if isinstance(spec, IcmpSpec):
            return await icmp.probe(target, spec, ctx)
        if isinstance(spec, TcpSpec):
            return await tcp.probe(target, spec, ctx)
        if isinstance(spec, HttpSpec):
            return await http.probe(target, spec, ctx)
        if isinstance(spec, SipSpec):
            return await sip.probe(target, spec, ctx)
        raise TypeError(f"no probe for {type(spec).__name__}")
    except Exception as exc:
        name = "icmp" if isinstance(spec, IcmpSpec) else spec.name
        log.exception("check %s of %s failed inside bridgemon", name, target)
        return ProbeResult(
            check=name,
            kind=_kind(spec),
            target=target,
            ok=False,
            started_at=started,
            duration=time.time() - started,
            reason=f"internal error: {exc}",
            burst=EchoBurst(target, (), f"internal error: {exc}")
            if isinstance(spec, IcmpSpec) else None,
        )


def _kind(spec: CheckSpec | IcmpSpec) -> str:
    if isinstance(spec, IcmpSpec):
        return "icmp"
    if isinstance(spec, TcpSpec):
        return spec.kind
    if isinstance(spec, HttpSpec):
        return spec.scheme
    return "sip"
