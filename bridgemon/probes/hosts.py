"""Is this a host a URL may name? IP literals and DNS names, checked before any lookup.

Holds :func:`check_host`, which the HTTP URL parser uses on configured URLs, on what a
technician types for ``bridgemon probe URL`` and on a device's ``Location:``; it returns
the name's ASCII (IDNA) form for the wire and refuses anything else with
``ValueError("bad host '…' (why)")``. Without it a name such as ``a..b`` reached the
resolver, whose IDNA encoding raised UnicodeError from deep inside a check.

Must not: resolve names or do any I/O.
"""

from __future__ import annotations

import ipaddress
import re

_ASCII_LABEL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
MAX_NAME = 253  # RFC 1035 §2.3.4, in the ASCII form, without the final dot
MAX_LABEL = 63


def check_host(host: str) -> str:
    """The ASCII form of ``host`` (an IP literal without brackets, or a DNS name, possibly
    international); ValueError naming the host and what is wrong with it otherwise."""

    def bad(why: str) -> ValueError:
        return ValueError(f"bad host {host!r} ({why})")

    if not host:
        raise bad("empty")
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise bad("not a valid IPv6 address") from None
    if all(c.isascii() and (c.isdigit() or c == ".") for c in host):
        # All digits and dots: meant as an IPv4 address, so 10.0.0.256 is a typo, not a name.
        try:
            return str(ipaddress.IPv4Address(host.removesuffix(".")))
        except ValueError:
            raise bad("not a valid IPv4 address") from None
    name = host.removesuffix(".")  # the root's dot, as in "codec.example."
    labels: list[str] = []
    for index, label in enumerate(name.split(".")):
        if not label:
            raise bad("an empty label: " + ("it starts with a dot" if index == 0
                                            else "two dots in a row"))  # fmt: skip
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                raise bad(f"{label!r} is not a valid international name") from None
        if len(label) > MAX_LABEL:
            raise bad(f"a label longer than {MAX_LABEL} characters")
        if not _ASCII_LABEL.fullmatch(label):
            raise bad("letters, digits, '-' and '_' only")
        if label.startswith("-") or label.endswith("-"):
            raise bad("a label starts or ends with '-'")
        labels.append(label)
    ascii_name = ".".join(labels)
    if len(ascii_name) > MAX_NAME:
        raise bad(f"longer than {MAX_NAME} characters")
    return ascii_name
