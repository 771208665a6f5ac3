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
driver is a lock and a loop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

#: Steps is a generator that yields at pause points and returns its result.
Steps = Generator[None, None, T]

BUDGET = 0.002  # seconds of work between two turns of the loop


async def run(steps: Steps[T], budget: float = BUDGET) -> T:
    """Drive ``steps`` to its end on the running loop, yielding to it every ``budget``.

    Runners take turns: one slice per turn of the loop in all, not one per runner, so
    three scrapes and a page in flight hold the engine for one slice, not four."""
    clock = time.perf_counter
    turn = _turn()
    while True:
        async with turn:
            deadline = clock() + budget
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                if clock() >= deadline:
                    break
            # The turn is held while the loop goes round once: the other runners wait for
            # it in line (the lock is fair), so no two slices share a turn of the loop.
            await asyncio.sleep(0)


# One turn per event loop (an asyncio.Lock belongs to the loop it was first used on).
_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = \
    weakref.WeakKeyDictionary()


def _turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    turn = _TURNS.get(loop)
    if turn is None:
        turn = _TURNS[loop] = asyncio.Lock()
    return turn


def drain(steps: Steps[T]) -> T:
    """Run ``steps`` at once (tests, a command line: no loop to share)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
