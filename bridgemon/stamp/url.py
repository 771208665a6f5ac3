"""``stamp://HOST[:PORT]?rate=2M&size=1200&duration=5s&dscp=AF41`` → :class:`TrainSpec`.

Every query parameter is optional: ``rate`` (bit/s, ``2M``), ``size`` (UDP payload
octets), ``duration`` (``5s``, ``500ms``), ``dscp`` (``AF41`` or 0-63), ``reflector``
(``auto``, ``stateful``, ``stateless``) and ``wait`` (how long answers are awaited after
the last packet). Errors quote the URL and name the part at fault.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qsl, urlsplit

from bridgemon.durations import parse_duration
from bridgemon.stamp.train import (
    DEFAULT_DSCP,
    DEFAULT_DURATION,
    DEFAULT_PORT,
    DEFAULT_RATE_BPS,
    DEFAULT_SIZE,
    DEFAULT_WAIT,
    REFLECTOR_MODES,
    ReflectorMode,
    TrainSpec,
)
from bridgemon.stamp.units import parse_dscp, parse_rate

PARAMETERS = ("rate", "size", "duration", "dscp", "reflector", "wait")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$", re.I)  # noqa: E501


def parse_stamp_url(text: str) -> TrainSpec:
    """The train a ``stamp://`` URL describes; ValueError naming the part at fault."""
    def fail(part: str, why: str) -> ValueError:
        return ValueError(f"stamp URL {text!r}: {part}: {why}")

    if not isinstance(text, str):
        raise ValueError(f"a stamp URL must be text, not {text!r}")
    raw = text.strip()
    scheme, sep, _ = raw.partition("://")
    if not sep or scheme.lower() != "stamp":
        raise fail("scheme", "must start with stamp:// (e.g. stamp://10.0.0.1?rate=2M)")
    try:
        parts = urlsplit(raw)
    except ValueError as exc:  # urllib's own checks (brackets, ports) come first
        raise fail("host", str(exc)) from None
    if parts.fragment or "#" in raw:
        raise fail("fragment", "a stamp URL has no #fragment")
    if parts.path not in ("", "/"):
        raise fail("path", f"{parts.path!r}: a stamp URL has no path; parameters go after ?")
    netloc = parts.netloc
    if "@" in netloc:
        raise fail("host", "a stamp URL has no user@ part")
    host, port = _host_port(netloc, fail)

    values: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        name = key.strip().lower()
        if name not in PARAMETERS:
            raise fail(f"parameter {key!r}", f"unknown; known are {', '.join(PARAMETERS)}")
        if name in values:
            raise fail(f"parameter {name}", "given twice")
        if not value.strip():
            raise fail(f"parameter {name}", "empty value")
        values[name] = value.strip()

    try:
        rate = parse_rate(values["rate"]) if "rate" in values else DEFAULT_RATE_BPS
    except ValueError as exc:
        raise fail("rate", str(exc)) from None
    try:
        size = int(values["size"]) if "size" in values else DEFAULT_SIZE
    except ValueError:
        raise fail("size", f"{values['size']!r} is not a whole number of octets") from None
    try:
        duration = (parse_duration(values["duration"]) if "duration" in values
                    else DEFAULT_DURATION)
    except ValueError as exc:
        raise fail("duration", str(exc)) from None
    try:
        dscp = parse_dscp(values["dscp"]) if "dscp" in values else DEFAULT_DSCP
    except ValueError as exc:
        raise fail("dscp", str(exc)) from None
    mode = values.get("reflector", "auto").lower()
    if mode not in REFLECTOR_MODES:
        raise fail("reflector", f"{mode!r}: one of {', '.join(REFLECTOR_MODES)}")
    try:
        wait = parse_duration(values["wait"]) if "wait" in values else DEFAULT_WAIT
    except ValueError as exc:
        raise fail("wait", str(exc)) from None
    try:
        return TrainSpec(
            host=host, port=port, rate_bps=rate, size=size, duration=duration, dscp=dscp,
            reflector=cast(ReflectorMode, mode), wait=wait,
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"stamp URL {text!r}: {exc}") from None


def _host_port(netloc: str, fail: Callable[[str, str], ValueError]) -> tuple[str, int]:
    if not netloc:
        raise fail("host", "missing (stamp://HOST[:PORT])")
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise fail("host", f"{netloc!r}: an IPv6 address needs its closing ]")
        host, rest = netloc[1:end], netloc[end + 1 :]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise fail("host", f"{host!r} in brackets is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise fail("port", f"{rest!r} after the address: write [ADDR]:PORT")
        port_text = rest[1:] if rest else ""
    else:
        if netloc.count(":") > 1:
            raise fail("host", f"{netloc!r}: put an IPv6 address in brackets, [2001:db8::1]")
        host, _, port_text = netloc.partition(":")
        if not _HOSTNAME.match(host):
            raise fail("host", f"{host!r} is not an address or a host name")
        if ":" in netloc and not port_text:
            raise fail("port", "empty after the colon")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise fail("port", f"{port_text!r}: must be a number 1-65535")
        port = int(port_text)
    return host, port
