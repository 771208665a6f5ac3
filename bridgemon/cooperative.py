"""Page work done on the event loop a few milliseconds at a time, instead of in a thread.

A worker thread doing Python work (a 12,000-site overview takes ~130 ms of it) holds the
GIL against the engine: the loop gives the GIL up at every system call, and the engine's
tick makes one per echo it sends, so with a busy thread a tick of 100 sends waited for the
GIL 100 times — 40-70 ms ticks, measured, even with the switch interval at 0.5 ms
(gil.py). So the pages' heavy work is written as generators that ``yield`` at safe points
(after a slice of sites, after each template chunk), and ``run`` drives one on the loop,
giving the loop back whenever ``budget`` seconds have gone; runners take turns, so the
engine waits at most one slice per turn of the loop, never a whole page, however many
requests are in flight. No library does this for jinja2 and plain Python loops; the
driver is a queue and a loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Generator
from typing import TypeVar

from bridgemon import gc_pacing

T = TypeVar("T")

#: Steps is a generator that yields at pause points and returns its result.
Steps = Generator[None, None, T]

BUDGET = 0.002  # seconds of work between two turns of the loop


async def run(steps: Steps[T], budget: float = BUDGET, *, urgent: bool = False) -> T:
    """Drive ``steps`` to its end on the running loop, yielding to it every ``budget``.

    Runners take turns: one slice per turn of the loop in all, not one per runner, so
    three scrapes and a page in flight hold the engine for one slice, not four. ``urgent``
    runners (a Prometheus scrape or an API read, which programs time) go before the others
    (a page, whose reader does not notice 100 ms)."""
    clock = time.perf_counter
    turns = _turns()
    await turns.take(urgent)
    held = True
    try:
        while True:
            deadline = clock() + budget
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    gc_pacing.settle()
                    # The last slice (it lets go of everything the steps held) ends a
                    # turn of the loop too: what the caller does next (another runner, a
                    # response of megabytes) starts a turn of its own.
                    await asyncio.sleep(0)
                    return done.value  # type: ignore[no-any-return]
                if clock() >= deadline:
                    break
            # What the slice built (a scrape's pieces: lists of 500 lines each, kept until
            # the next scrape) leaves the collector's young generation now, so no young
            # collection walks more than one slice's allocations (gc_pacing.settle).
            gc_pacing.settle()
            # The turn is held while the loop goes round once, so no two slices share a
            # turn of the loop; then it passes to whoever waits (an urgent runner keeps it
            # unless another urgent one waits).
            await asyncio.sleep(0)
            if turns.waiting(urgent):
                held = False
                turns.give()
                await turns.take(urgent)
                held = True
    finally:
        if held:
            turns.give()


class _Turns:
    """Who runs the next slice: one runner at a time, urgent ones first, each line first
    come first served. The turn passes from hand to hand (``give``), so a runner that just
    ran cannot take it again before those waiting."""

    def __init__(self) -> None:
        self._busy = False
        self._lines: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def take(self, urgent: bool) -> None:
        if not self._busy and not any(self._lines):
            self._busy = True
            return
        waiting = asyncio.get_running_loop().create_future()
        line = self._lines[0 if urgent else 1]
        line.append(waiting)
        try:
            await waiting
        except asyncio.CancelledError:
            if waiting.done() and not waiting.cancelled():
                self.give()  # it was handed to us as we were cancelled: hand it on
            elif waiting in line:
                line.remove(waiting)
            raise

    def waiting(self, urgent: bool) -> bool:
        """Does someone wait who goes before an ``urgent`` (or a normal) runner's next
        slice."""
        return bool(self._lines[0]) if urgent else any(self._lines)

    def give(self) -> None:
        for line in self._lines:
            while line:
                waiting = line.popleft()
                if not waiting.done():
                    waiting.set_result(None)  # still busy: the turn is theirs now
                    return
        self._busy = False


_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = \
    weakref.WeakKeyDictionary()


def _turns() -> _Turns:
    """The turns of the running loop (futures belong to one loop)."""
    loop = asyncio.get_running_loop()
    turns = _TURNS.get(loop)
    if turns is None:
        turns = _TURNS[loop] = _Turns()
    return turns


def drain(steps: Steps[T]) -> T:
    """Run ``steps`` at once (tests, a command line: no loop to share)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
