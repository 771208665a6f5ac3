"""The bandwidth budget of a whole test run, shared by all its trains.

A pre-event test of 260 sites must not start 260 trains of 2 Mbit/s at once (520 Mbit/s
out of the monitor's own uplink would measure the monitor, not the sites). Each train
reserves its rate before its first packet and releases it after its last answer; trains
that do not fit wait their turn, first come first served, for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bridgemon.stamp.units import format_rate


class BudgetError(Exception):
    """A train cannot run within the budget; the message says why, in English."""

    def __init__(self, message: str, message_vi: str) -> None:
        super().__init__(message)
        self.message_vi = message_vi


@dataclass(slots=True)
class _Waiter:
    rate: float
    future: asyncio.Future[None]


class BandwidthBudget:
    """At most ``limit_bps`` of trains (and at most ``max_trains`` of them) at a time.

    Rates are wire rates in one direction (each train's answers come back at the same
    rate). Bound to the event loop that first uses it.
    """

    def __init__(self, limit_bps: float, *, max_trains: int | None = None) -> None:
        if not (math.isfinite(limit_bps) and limit_bps > 0):
            raise ValueError(f"bandwidth budget {limit_bps!r}: must be a positive bit rate")
        if max_trains is not None and max_trains < 1:
            raise ValueError(f"max_trains {max_trains!r}: must be at least 1")
        self.limit_bps = float(limit_bps)
        self.max_trains = max_trains
        self.in_use_bps = 0.0
        self.running = 0
        self.peak_bps = 0.0
        self.peak_trains = 0
        self.granted = 0
        self.refused = 0
        self._waiters: deque[_Waiter] = deque()

    def check(self, rate_bps: float) -> None:
        """Raise BudgetError if a train of this rate could never run (for config checks)."""
        if rate_bps > self.limit_bps:
            raise BudgetError(
                f"a {format_rate(rate_bps)} train exceeds the test run's whole bandwidth "
                f"budget of {format_rate(self.limit_bps)}",
                f"luồng {format_rate(rate_bps)} vượt quá toàn bộ băng thông dành cho đợt "
                f"kiểm tra ({format_rate(self.limit_bps)})",
            )

    def _fits(self, rate: float) -> bool:
        # A small tolerance so that 50 trains of 2 Mbit/s fill 100 Mbit/s exactly.
        return self.in_use_bps + rate <= self.limit_bps * (1 + 1e-9) and (
            self.max_trains is None or self.running < self.max_trains
        )

    def _take(self, rate: float) -> None:
        self.in_use_bps += rate
        self.running += 1
        self.granted += 1
        self.peak_bps = max(self.peak_bps, self.in_use_bps)
        self.peak_trains = max(self.peak_trains, self.running)

    def _release(self, rate: float) -> None:
        self.in_use_bps = max(0.0, self.in_use_bps - rate)
        self.running -= 1
        self._wake()

    def _wake(self) -> None:
        # Strict FIFO: a large train at the head is not overtaken by small ones forever.
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                self._waiters.popleft()
                continue
            if not self._fits(head.rate):
                return
            self._waiters.popleft()
            self._take(head.rate)
            head.future.set_result(None)

    @contextlib.asynccontextmanager
    async def reserve(self, rate_bps: float, *, wait: float) -> AsyncIterator[None]:
        """Hold ``rate_bps`` of the budget for the ``async with`` block.

        Waits at most ``wait`` seconds for room; BudgetError when the train can never fit
        or the wait runs out.
        """
        try:
            self.check(rate_bps)
        except BudgetError:
            self.refused += 1
            raise
        if not self._waiters and self._fits(rate_bps):
            self._take(rate_bps)
        else:
            waiter = _Waiter(rate_bps, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter.future), timeout=wait)
            except TimeoutError:
                if waiter.future.done():  # granted just as the wait ran out: keep it
                    pass
                else:
                    waiter.future.cancel()
                    self._wake()
                    self.refused += 1
                    raise BudgetError(
                        f"no room in the test run's bandwidth budget for {wait:g} s "
                        f"({self.running} trains use {format_rate(self.in_use_bps)} of "
                        f"{format_rate(self.limit_bps)})",
                        f"chờ {wait:g} s vẫn không đủ băng thông dành cho đợt kiểm tra "
                        f"({self.running} luồng đang dùng {format_rate(self.in_use_bps)} / "
                        f"{format_rate(self.limit_bps)})",
                    ) from None
            except BaseException:
                if waiter.future.done() and not waiter.future.cancelled():
                    self._release(rate_bps)  # granted, then we were cancelled
                else:
                    waiter.future.cancel()
                    self._wake()
                raise
        try:
            yield
        finally:
            self._release(rate_bps)
