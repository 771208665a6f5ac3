"""What this host's clock can promise, for the Error Estimate of the packets it stamps.

The kernel knows whether NTP (or PTP) keeps the clock synchronized and how far off it
may be (``adjtimex``, read-only, no privilege). A reflector or sender that always
claimed S = 1 would make one-way figures look trustworthy when they are not.
"""

from __future__ import annotations

import contextlib
import ctypes
import time

from bridgemon.stamp.packets import ErrorEstimate

_TIME_ERROR = 5  # adjtimex() result: the clock is not synchronized
_STA_UNSYNC = 0x0040
#: When the kernel cannot tell: one second, and not synchronized.
_UNKNOWN = ErrorEstimate.for_seconds(1.0, synchronized=False).encode()
_REFRESH_S = 60.0


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> (Linux, glibc), read with modes = 0.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_pad", ctypes.c_int * 11),
    ]  # fmt: skip


def kernel_error_estimate() -> int:
    """The Error Estimate field this host should send now (encoded, 16 bits)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc's
        timex = _Timex()
        state = libc.adjtimex(ctypes.byref(timex))
        if state < 0:
            return _UNKNOWN
        synced = state != _TIME_ERROR and not timex.status & _STA_UNSYNC
        micros = timex.esterror if synced else timex.maxerror
        return ErrorEstimate.for_seconds(max(1, micros) / 1e6, synchronized=synced).encode()
    return _UNKNOWN


class ClockInfo:
    """The error estimate, re-read from the kernel at most once a minute (it is a syscall
    plus a ctypes call, too slow for every packet and changing far more slowly)."""

    def __init__(self) -> None:
        self._value = _UNKNOWN
        self._read_at = -_REFRESH_S * 2

    def error_estimate(self) -> int:
        now = time.monotonic()
        if now - self._read_at > _REFRESH_S:
            self._value = kernel_error_estimate()
            self._read_at = now
        return self._value


#: One per process: every train and reflector socket shares the kernel's answer.
SHARED = ClockInfo()
