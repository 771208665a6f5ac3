"""Bit rates and DSCP code points as people write them: ``2M``, ``512k``, ``AF41``, ``46``.

Shared by the ``stamp://`` URL parser, the lab's ``--rate`` option and the reasons, so a
rate reads the same everywhere (``2 Mbit/s``).
"""

from __future__ import annotations

import math
import re

_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)\s*(bit/s|bits/s|bps|b/s|bit|bits|b)?$")
_RATE_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(value: object) -> float:
    """Bits per second from ``"2M"``, ``"512k"``, ``"1.5Mbit/s"``, ``"2000000"`` or a number.

    k, M and G are decimal (1 M = 1,000,000 bit/s), as for line rates. ValueError says what
    to write instead.
    """
    if isinstance(value, bool):
        raise ValueError("a rate, not a boolean: write bits per second like 2M or 512k")
    if isinstance(value, int | float):
        bps = float(value)
    elif isinstance(value, str):
        match = _RATE.match(value.strip().lower())
        if match is None:
            raise ValueError(
                f"bad rate {value!r}: write bits per second like 2M, 512k or 1.5M"
            )
        bps = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    else:
        raise ValueError(f"a rate must be a string like \"2M\" or a number, not {value!r}")
    if not math.isfinite(bps) or bps <= 0:
        raise ValueError(f"bad rate {value!r}: must be a positive number of bits per second")
    return bps


def format_rate(bps: float) -> str:
    """``2 Mbit/s``, ``1.5 Mbit/s``, ``512 kbit/s``, ``800 bit/s`` (three significant digits)."""
    for unit, size in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= size:
            return f"{_sig(bps / size)} {unit}"
    return f"{_sig(bps)} bit/s"


def _sig(number: float) -> str:
    text = f"{number:.3g}"
    if "e" in text:  # 1000 kbit/s would print 1e+03; the unit above catches it first
        text = f"{number:.0f}"
    return text


#: DSCP names (RFC 2474 class selectors, RFC 2597 assured forwarding, RFC 3246 EF,
#: RFC 5865 VOICE-ADMIT, RFC 8622 LE). AF41 is what video conferencing is marked with
#: (RFC 4594, "multimedia conferencing").
DSCP_NAMES: dict[str, int] = {
    "BE": 0, "DF": 0, "CS0": 0, "LE": 1,
    "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48, "CS7": 56,
    "AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20, "AF23": 22,
    "AF31": 26, "AF32": 28, "AF33": 30, "AF41": 34, "AF42": 36, "AF43": 38,
    "VA": 44, "EF": 46,
}  # fmt: skip
_DSCP_BY_VALUE = {value: name for name, value in reversed(DSCP_NAMES.items())}
_DSCP_BY_VALUE[0] = "BE"


def parse_dscp(value: object) -> int:
    """A DSCP code point 0-63 from a number or a name (``AF41``, ``EF``, ``CS5``, ``BE``)."""
    if isinstance(value, bool):
        raise ValueError("a DSCP, not a boolean: write a name such as AF41 or a number 0-63")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip().upper()
        if text in DSCP_NAMES:
            return DSCP_NAMES[text]
        if not text.isdigit():
            raise ValueError(
                f"bad DSCP {value!r}: use a number 0-63 or a name such as AF41, EF, CS5, BE"
            )
        number = int(text)
    else:
        raise ValueError(f"a DSCP must be a name like \"AF41\" or a number, not {value!r}")
    if not 0 <= number <= 63:
        raise ValueError(f"bad DSCP {value!r}: a code point is 0-63")
    return number


def dscp_name(value: int) -> str:
    """``AF41`` for 34; the number itself for a code point without a name."""
    return _DSCP_BY_VALUE.get(value, str(value))
