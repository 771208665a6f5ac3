"""The URL forms of ``bridgemon probe URL`` (beside ``cli_probe.py``, which runs the check):
one check against one target, typed by hand.

Holds :func:`parse_probe_url`, which turns ``icmp://HOST``, ``tcp://HOST:PORT``,
``h323://HOST[:PORT]``, ``sip://HOST[:PORT][;transport=udp|tcp|tls]`` (also written
``sip:HOST``, as SIP URIs are), ``sips://HOST[:PORT]``, ``http://…``, ``https://…`` and
``mtu://HOST[?size=1472]`` (the path MTU check: ICMP echoes of ``size`` payload octets
with DF set) into ``(kind, host, spec)``: ``kind`` is the ProbeResult kind the check will
have (icmp, tcp, h323, sip, http, https, mtu), ``host`` the address or name to probe,
``spec`` the default spec of that check with what the URL says.

``stamp://…`` (a packet train) is recognised here (:func:`is_stamp_url`) and parsed by
``bridgemon.stamp.parse_stamp_url``, its own parser. Anything else raises ValueError
whose message a technician on the phone can act on.
Must not: resolve names, open sockets, or know about the inventory's profiles.
"""

from __future__ import annotations

import ipaddress
import re

from bridgemon.probes.http import split_url
from bridgemon.specs import (
    MTU_DEFAULT_SIZE,
    MTU_MAX_SIZE,
    MTU_MIN_SIZE,
    CheckSpec,
    HttpSpec,
    IcmpSpec,
    MtuSpec,
    SipSpec,
    TcpSpec,
)

FORMS = (
    "icmp://HOST, tcp://HOST:PORT, h323://HOST[:PORT], "
    "sip://HOST[:PORT][;transport=udp|tcp|tls], sips://HOST[:PORT], http://…, https://…, "
    "stamp://HOST[:PORT]?rate=2M&size=1200&duration=5s, mtu://HOST[?size=1472]"
)
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def is_stamp_url(url: str) -> bool:
    """A packet train (``stamp://…``): parsed and run by ``bridgemon.stamp``, not here."""
    return url.strip().lower().startswith("stamp:")


def parse_probe_url(url: str) -> tuple[str, str, CheckSpec | IcmpSpec]:
    """``(kind, host, spec)`` for one of the URL forms above; ValueError otherwise."""
    text = url.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or not scheme:
        raise ValueError(f"{url!r} has no scheme; use one of {FORMS}")
    if scheme in ("http", "https"):
        try:
            parts = split_url(text)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        spec = HttpSpec(
            name=scheme, scheme=scheme, port=parts.port, path=parts.target, url=parts.text
        )
        return scheme, parts.host, spec
    if scheme == "mtu":
        return _parse_mtu(url, rest)
    if scheme not in ("icmp", "tcp", "h323", "sip", "sips"):
        raise ValueError(f"{url!r}: unknown scheme {scheme!r}; use one of {FORMS}")
    if rest.startswith("//"):
        rest = rest[2:]
    elif scheme not in ("sip", "sips"):  # SIP URIs have no "//"; the others must
        raise ValueError(f"{url!r}: write it as {scheme}://…")
    rest = rest.removesuffix("/")
    for bad, what in (("/", "path"), ("?", "query"), ("#", "fragment")):
        if bad in rest:
            raise ValueError(f"{url!r}: a {scheme} URL takes no {what}")
    rest, params = _split_params(url, scheme, rest)
    if "@" in rest:
        if scheme not in ("sip", "sips"):
            raise ValueError(f"{url!r}: a {scheme} URL takes no user name")
        rest = rest.rsplit("@", 1)[1]  # sip:1001@codec — OPTIONS goes to the host anyway
    host, port = _host_port(url, rest)
    if scheme == "icmp":
        if port is not None:
            raise ValueError(f"{url!r}: ping has no port; use icmp://HOST")
        return "icmp", host, IcmpSpec()
    if scheme == "tcp":
        if port is None:
            raise ValueError(f"{url!r}: a tcp check needs a port: tcp://HOST:PORT")
        return "tcp", host, TcpSpec(name="tcp", port=port)
    if scheme == "h323":
        return "h323", host, TcpSpec(name="h323", port=port or 1720, kind="h323")
    transport = params.get("transport", "tls" if scheme == "sips" else "udp")
    if scheme == "sips" and transport != "tls":
        raise ValueError(f"{url!r}: sips means TLS; use sip://…;transport={transport}")
    default = 5061 if transport == "tls" else 5060
    return "sip", host, SipSpec(name="sip", transport=transport, port=port or default)


def _parse_mtu(url: str, rest: str) -> tuple[str, str, MtuSpec]:
    """``mtu://HOST[?size=N]``: IPv4 (or a name), no port (ICMP), one parameter."""
    if not rest.startswith("//"):
        raise ValueError(f"{url!r}: write it as mtu://HOST[?size=1472]")
    rest, _, query = rest[2:].partition("?")
    rest = rest.removesuffix("/")
    for bad, what in (("/", "path"), ("#", "fragment"), (";", ";parameter"), ("@", "user name")):
        if bad in rest or bad in query:
            raise ValueError(f"{url!r}: an mtu URL takes no {what}")
    if rest.startswith("["):
        raise ValueError(f"{url!r}: the path MTU check is IPv4 only for now")
    host, port = _host_port(url, rest)
    if port is not None:
        raise ValueError(f"{url!r}: the MTU check is ICMP, it has no port; use mtu://HOST")
    size = MTU_DEFAULT_SIZE
    seen: set[str] = set()
    for item in query.split("&") if query else ():
        name, equals, value = item.partition("=")
        name = name.strip().lower()
        if name != "size":
            raise ValueError(f"{url!r}: unknown parameter {name!r}; only ?size=N")
        if name in seen:
            raise ValueError(f"{url!r}: size is given twice")
        seen.add(name)
        value = value.strip()
        if not equals or not value.isdigit() or not MTU_MIN_SIZE <= int(value) <= MTU_MAX_SIZE:
            raise ValueError(
                f"{url!r}: size {value!r} must be {MTU_MIN_SIZE}-{MTU_MAX_SIZE} octets of ICMP "
                f"payload (the packet is 28 more: 1472 fills a 1500-octet MTU)")
        size = int(value)
    return "mtu", host, MtuSpec(name="mtu", size=size)


def _split_params(url: str, scheme: str, rest: str) -> tuple[str, dict[str, str]]:
    """Split ``;name=value`` parameters off (SIP only: transport)."""
    head, *raw = rest.split(";")
    if raw and scheme not in ("sip", "sips"):
        raise ValueError(f"{url!r}: a {scheme} URL takes no ;parameters")
    params: dict[str, str] = {}
    for item in raw:
        name, _, value = item.partition("=")
        name, value = name.strip().lower(), value.strip().lower()
        if name != "transport":
            raise ValueError(
                f"{url!r}: unknown parameter {name!r}; only ;transport=udp|tcp|tls"
            )
        if value not in ("udp", "tcp", "tls"):
            raise ValueError(f"{url!r}: transport must be udp, tcp or tls, not {value!r}")
        params[name] = value
    return head, params


def _host_port(url: str, text: str) -> tuple[str, int | None]:
    """Host (IPv6 without brackets) and optional port of ``host[:port]``."""
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{url!r}: missing ']' after the IPv6 address")
        host, after = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{url!r}: {host!r} in brackets is not an IPv6 address") from None
        if after:
            if not after.startswith(":"):
                raise ValueError(f"{url!r}: unexpected {after!r} after the IPv6 address")
            port_text = after[1:]
    else:
        if text.count(":") > 1:
            raise ValueError(f"{url!r}: put an IPv6 address in brackets, e.g. [2001:db8::1]")
        host, colon, after = text.partition(":")
        if colon:
            port_text = after
        if not host:
            raise ValueError(f"{url!r} has no host")
        if not _is_ipv4(host) and not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{url!r}: {host!r} is not a valid host name or IPv4 address")
        if _looks_numeric(host) and not _is_ipv4(host):
            raise ValueError(f"{url!r}: {host!r} is not a valid IPv4 address")
    port: int | None = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{url!r}: bad port {port_text!r} (a number 1-65535)")
        port = int(port_text)
    return host, port


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _looks_numeric(host: str) -> bool:
    """All digits and dots: meant as an IPv4 address (so 10.0.0.256 is a typo, not a name)."""
    return bool(host) and all(c.isdigit() or c == "." for c in host.rstrip("."))
