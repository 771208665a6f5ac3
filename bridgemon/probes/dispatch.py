"""One entry point for every kind of check: a table from spec type to the probe that runs it.

As blackbox_exporter's ``Probers`` map a module's prober name to its function, ``PROBERS``
maps each spec type to its probe and to the check type the results carry; a new protocol
is one module and one row here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bridgemon.probes import ProbeContext, http, icmp, sip, tcp
from bridgemon.probes.result import EchoBurst, ProbeResult
from bridgemon.specs import (
    CheckSpec,
    HttpSpec,
    IcmpSpec,
    MtuSpec,
    SipSpec,
    StampSpec,
    TcpSpec,
)
from bridgemon.stamp import check as stamp
from bridgemon.stamp import pmtu_check

log = logging.getLogger(__name__)

Spec = TypeVar("Spec", IcmpSpec, TcpSpec, HttpSpec, SipSpec, StampSpec, MtuSpec)


@dataclass(frozen=True, slots=True)
class Prober(Generic[Spec]):
    probe: Callable[[str, Spec, ProbeContext], Awaitable[ProbeResult]]
    kind: Callable[[Spec], str]  # the check type of its results: icmp, tcp, h323, https, ...


def _row(spec: type[Spec], probe: Callable[[str, Spec, ProbeContext], Awaitable[ProbeResult]],
         kind: Callable[[Spec], str]) -> tuple[type[Spec], Prober[Any]]:
    """One row of the table, its three parts checked against each other."""
    return spec, Prober(probe, kind)


PROBERS: dict[type[Any], Prober[Any]] = dict((
    _row(IcmpSpec, icmp.probe, lambda spec: "icmp"),
    _row(TcpSpec, tcp.probe, lambda spec: spec.kind),
    _row(HttpSpec, http.probe, lambda spec: spec.scheme),
    _row(SipSpec, sip.probe, lambda spec: "sip"),
    _row(StampSpec, stamp.probe, lambda spec: stamp.KIND),
    _row(MtuSpec, pmtu_check.probe, lambda spec: pmtu_check.KIND),
))


async def run_check(target: str, spec: CheckSpec | IcmpSpec, ctx: ProbeContext) -> ProbeResult:
    """Run one check; a bug in a probe costs that one result, never the round."""
    started = time.time()
    prober = PROBERS.get(type(spec))
    try:
        if prober is None:
            raise TypeError(f"no probe for {type(spec).__name__}")
        return await prober.probe(target, spec, ctx)
    except Exception as exc:
        name = "icmp" if isinstance(spec, IcmpSpec) else spec.name
        log.exception("check %s of %s failed inside bridgemon", name, target)
        return ProbeResult(
            check=name,
            kind=prober.kind(spec) if prober is not None else type(spec).__name__,
            target=target,
            ok=False,
            started_at=started,
            duration=time.time() - started,
            reason=f"internal error: {exc}",
            burst=EchoBurst(target, (), f"internal error: {exc}")
            if isinstance(spec, IcmpSpec) else None,
        )
