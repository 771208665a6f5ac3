"""Durations as people write them in the inventory: "200ms", "1.5s", "2m", "1h30m", or seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# No setting of bridgemon means anything beyond a year (intervals are at most a day,
# pre-tests come days before an event, certificate warnings weeks before expiry), so a
# longer duration is a typo ("30000d" for "30s"). The bound also keeps every instant
# computed from a duration (start - pre-test offset, event end, the event window) well
# inside what datetime can hold.
MAX_DURATION = 366 * 86400.0


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string such as "200ms", "1m30s"; ValueError if bad."""
    if isinstance(value, bool):
        raise ValueError("a duration, not a boolean: write e.g. \"30s\" or \"200ms\"")
    if isinstance(value, int) and not 0 <= value <= MAX_DURATION:
        # float(10**400) raises OverflowError; the checks below only need the side it is out on
        seconds = -1.0 if value < 0 else 2 * MAX_DURATION
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise ValueError("empty duration: write e.g. \"30s\" or \"200ms\"")
        position = 0
        seconds = 0.0
        for match in _PART.finditer(text):
            if match.start() != position and text[position : match.start()].strip():
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            position = match.end()
        if position != len(text) or position == 0:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"bad duration {value!r}: use a number of seconds or units ms, s, m, h, d "
                    "(e.g. \"200ms\", \"1.5s\", \"1m30s\")"
                ) from None
    else:
        raise ValueError(f"a duration must be a string like \"30s\" or a number, not {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad duration {_short(value)}: must be a finite, non-negative time")
    if seconds > MAX_DURATION:
        raise ValueError(
            f"bad duration {_short(value)}: at most {format_duration(MAX_DURATION)} (a year)"
        )
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration field of a pydantic model: written as parse_duration reads it, held in
seconds. Bounds (``Field(ge=..., le=...)``) apply to the seconds."""


def _short(value: object) -> str:
    """The value as the message shows it: quoted, and a runaway number cut short."""
    if isinstance(value, int) and value.bit_length() > 64:  # repr() refuses > 4300 digits
        return f"(a number of about {int(value.bit_length() * math.log10(2)) + 1} digits)"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.2 -> "200ms", 90 -> "1m30s"."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out
