"""Turning a site's address into an IP, with a timeout and a reason when it fails."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from bridgemon.probes.hosts import check_host


class ResolveError(Exception):
    """The name could not be turned into an address; the message is the reason."""


def ip_literal(host: str) -> str | None:
    """``host`` as an IP address when it is one (IPv6 in its canonical form), else None."""
    try:  # the common case, every round for every site: keep it cheap
        socket.inet_pton(socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def resolve(host: str, timeout: float) -> str:
    """An IP literal for ``host``: IPs pass through, names go to the system resolver."""
    address = ip_literal(host)
    if address is not None:
        return address
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_RAW)
    except TimeoutError:
        raise ResolveError(f"DNS lookup of {host} timed out after {timeout:g} s") from None
    except socket.gaierror as exc:
        raise ResolveError(f"DNS lookup of {host} failed: {exc.strerror}") from None
    except OSError as exc:
        raise ResolveError(f"DNS lookup of {host} failed: {exc}") from None
    except ValueError as exc:
        # Not a name at all: "a..b" fails the IDNA encoding (UnicodeError), a NUL is
        # refused outright. Say what is wrong with it, not that "the codec failed".
        try:
            check_host(host)
        except ValueError as bad:
            raise ResolveError(str(bad)) from None
        raise ResolveError(f"DNS lookup of {host!r} impossible: {exc}") from None
    for family in (socket.AF_INET, socket.AF_INET6):  # prefer IPv4, as ping does
        for info in infos:
            if info[0] == family:
                return str(info[4][0])
    raise ResolveError(f"DNS lookup of {host} returned no IPv4 or IPv6 address")
