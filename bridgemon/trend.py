"""The last hours of one site's path quality, for the chart on its page.

The windows keep only the rounds a verdict needs (a few minutes); the site page shows the
last six hours. Kept small because every site has one: 72 points of 5 minutes, each the
worst round of its 5 minutes (RTT, loss and jitter, each its own worst: a chart of
averages hides the spike the technician is looking for), packed in 432 bytes. Measured at
12,000 sites in tests/test_trend.py: well under 15 MB.

Written by the board as rounds are recorded (on the event loop); a reader copies a site's
points with ``points`` on the loop too, so it never sees a half-written slot.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bridgemon.probes.result import SiteRound

BUCKET = 300.0  # seconds per point
POINTS = 72  # points kept: 6 hours
_SLOT = struct.Struct("<HHH")  # RTT and jitter in 0.1 ms, loss in 0.01 %
_EMPTY = 0xFFFF  # no round in that slot
_TOP = 0xFFFE  # the largest figure a slot holds (6.5 s, 655 %: clamped)
_BLANK = _SLOT.pack(_EMPTY, _EMPTY, _EMPTY)


@dataclass(frozen=True, slots=True)
class Point:
    """One 5-minute slot: its start (epoch seconds) and its worst figures, None if unknown."""

    at: float
    rtt_ms: float | None
    loss_pct: float | None
    jitter_ms: float | None


def _pack(value: float | None, scale: float) -> int:
    if value is None:
        return _EMPTY
    return min(_TOP, max(0, round(value * scale)))


def _worse(old: int, new: int) -> int:
    """The worse of two packed figures, an empty one counting for nothing."""
    if old == _EMPTY:
        return new
    return old if new == _EMPTY or old >= new else new


def _unpack(raw: int, scale: float) -> float | None:
    return None if raw == _EMPTY else raw / scale


class Trend:
    """One site's ring of points."""

    __slots__ = ("_data", "_last_bucket", "_last_round")

    def __init__(self) -> None:
        self._data = bytearray(_BLANK * POINTS)
        self._last_bucket = -1  # the bucket number of the newest slot written
        self._last_round = 0.0  # started_at of the newest round taken

    def add(self, site_round: SiteRound) -> None:
        """Take a round's ICMP figures; a round taken already (replayed into the board a
        reload builds) or older than the newest is ignored."""
        if site_round.started_at <= self._last_round:
            return
        icmp = site_round.result("icmp")
        burst = icmp.burst if icmp is not None else None
        if burst is None or not burst.sent:
            return
        self._last_round = site_round.started_at
        received = burst.received
        # (filter drops the Nones: an RTT of exactly 0.0 does not happen)
        rtt = sum(filter(None, burst.rtts)) / received * 1000 if received else None
        jitter = (burst.jitter_sum / burst.jitter_count * 1000 if burst.jitter_count
                  else (0.0 if received else None))
        loss = (burst.sent - received) / burst.sent * 100
        bucket = int(site_round.started_at // BUCKET)
        if bucket > self._last_bucket:
            # Slots skipped since the newest (no round for a while) are emptied, so a slot
            # never shows a reading from six hours before.
            for skipped in range(max(self._last_bucket + 1, bucket - POINTS + 1), bucket + 1):
                offset = (skipped % POINTS) * _SLOT.size
                self._data[offset:offset + _SLOT.size] = _BLANK
            self._last_bucket = bucket
        elif bucket <= self._last_bucket - POINTS:
            return
        offset = (bucket % POINTS) * _SLOT.size
        old_rtt, old_jitter, old_loss = _SLOT.unpack_from(self._data, offset)
        _SLOT.pack_into(self._data, offset, _worse(old_rtt, _pack(rtt, 10)),
                        _worse(old_jitter, _pack(jitter, 10)), _worse(old_loss, _pack(loss, 100)))

    def points(self, now: float) -> list[Point]:
        """The last ``POINTS`` slots up to ``now``, oldest first (empty ones included)."""
        data = bytes(self._data)
        newest = int(now // BUCKET)
        out = []
        for bucket in range(newest - POINTS + 1, newest + 1):
            if bucket > self._last_bucket or bucket <= self._last_bucket - POINTS:
                out.append(Point(bucket * BUCKET, None, None, None))
                continue
            rtt, jitter, loss = _SLOT.unpack_from(data, (bucket % POINTS) * _SLOT.size)
            out.append(Point(bucket * BUCKET, _unpack(rtt, 10), _unpack(loss, 100),
                             _unpack(jitter, 10)))
        return out
