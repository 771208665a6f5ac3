"""How late the event loop runs its callbacks: the monitor's own health, in seconds.

Everything bridgemon measures is timed by the loop (echo sends, burst deadlines, round
pacing), so a loop that runs late is the first suspect when figures look wrong. A timer due
every ``period`` on the pinger's tick grid (so it shares the engine's wake-up instead of
adding one) notes how late it fired; the worst lateness is kept per second for the last
``window`` seconds, and ``worst()`` is their maximum — what
``bridgemon_event_loop_lag_seconds`` exports, so a scrape every 15 s sees every stall.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque


class LoopLagMeter:
    def __init__(self, *, period: float = 0.05, window: float = 30.0) -> None:
        self.period = period
        self._seconds: deque[tuple[int, float]] = deque()  # (second, worst lag in it)
        self._window = math.ceil(window)
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self.worst_ever = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm(self._loop.time())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._due = (math.floor(now / self.period) + 1) * self.period
        self._handle = self._loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.note(max(0.0, now - self._due), now)
        self._arm(now)

    def note(self, lag: float, now: float) -> None:
        second = int(now)
        seconds = self._seconds
        if seconds and seconds[-1][0] == second:
            if lag > seconds[-1][1]:
                seconds[-1] = (second, lag)
        else:
            seconds.append((second, lag))
        while seconds and seconds[0][0] <= second - self._window:
            seconds.popleft()
        if lag > self.worst_ever:
            self.worst_ever = lag

    def worst(self, now: float | None = None) -> float:
        """The worst lag in the last ``window`` seconds."""
        if now is None:
            now = self._loop.time() if self._loop is not None else 0.0
        horizon = int(now) - self._window
        return max((lag for second, lag in self._seconds if second > horizon), default=0.0)
