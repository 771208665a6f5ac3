"""TCP connect check (``tcp``) and H.323 call-signalling check (``h323``, TCP 1720).

Holds the probe that opens one TCP connection to the site, times the connect and closes
it again. Refused, timed out and unreachable are different reasons: to a technician they
mean "the device answers but nothing listens", "something filters the port or the site
is gone" and "the network has no route to it".

Must not: send anything on the connection (an H.323 endpoint would log a bogus call),
wait past ``spec.timeout`` in total (DNS included), raise for anything the network does,
or touch state and metrics.
"""

from __future__ import annotations

import asyncio
import socket
import time

from bridgemon.probes import ProbeContext
from bridgemon.probes.conn import connect, connect_failure, host_for_uri
from bridgemon.probes.resolve import ResolveError, resolve
from bridgemon.probes.result import ProbeResult
from bridgemon.specs import TcpSpec


def label(kind: str, port: int) -> str:
    """How reasons name the check: "H.323 1720" or "TCP 443"."""
    return f"H.323 {port}" if kind == "h323" else f"TCP {port}"


async def probe(target: str, spec: TcpSpec, ctx: ProbeContext) -> ProbeResult:
    """Connect to ``target:spec.port`` (IP or host name) and close again."""
    what = label(spec.kind, spec.port)
    details: dict[str, object] = {"port": spec.port}
    reason: str | None = None
    sock: socket.socket | None = None
    # The slot is held from before the socket exists until after it is closed. The
    # timeout starts once we hold it: waiting for a slot is this process being busy,
    # not the site being slow, and must not be reported against the site.
    async with ctx.sockets:
        started_wall = time.time()
        started = time.monotonic()
        phase = "looking up the name"
        try:
            async with asyncio.timeout(spec.timeout):
                address = await resolve(target, min(ctx.resolve_timeout, spec.timeout))
                details["address"] = address
                phase = "connecting"
                connect_started = time.monotonic()
                sock = await connect(address, spec.port)
                details["connect_seconds"] = time.monotonic() - connect_started
        except ResolveError as exc:
            reason = f"{what}: {exc}"
        except TimeoutError:  # before OSError: TimeoutError is one
            reason = f"{what}: timed out after {spec.timeout:g} s"
            if phase != "connecting":
                reason += f" {phase}"
        except OSError as exc:
            reason = f"{what}: {connect_failure(exc)}"
        finally:
            if sock is not None:
                sock.close()
        duration = time.monotonic() - started
    address = str(details.get("address", target))
    return ProbeResult(
        check=spec.name,
        kind=spec.kind,
        target=f"{host_for_uri(address)}:{spec.port}",
        ok=reason is None,
        started_at=started_wall,
        duration=duration,
        reason=reason,
        details=details,
    )
