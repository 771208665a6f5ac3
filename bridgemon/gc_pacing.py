"""Keeping CPython's garbage collections short on the engine's loop.

The windows and views of a national inventory hold about 600,000 container objects that
live one to five rounds and die by reference counting, not in cycles. CPython still scans
every one of them in each full (generation 2) collection, which it starts whenever a
quarter more objects have survived since the last one: every few seconds at 12,000 sites,
0.1–0.25 s each, on the event loop (measured here with ``gc.callbacks``) — long enough to
delay echo sends, deadlines and pacing, and to show as ``bridgemon_event_loop_lag_seconds``.

So what survives a young collection is moved out of the collector's generations at once
(``gc.freeze`` at the end of every collection, O(1)): automatic collections only ever look
at what was allocated since the last one, never at the survivors, and frozen objects
freed later by reference counting are freed all the same. Survivors had first been frozen
by a timer, four times a second: enough for the rounds (about 10,000 survivors a second at
12,000 sites), not for a national test run, whose 1,000 probes in flight left 15,000-19,000
survivors between two freezes, and every tenth young collection (generation 1) scanned
them: 13-23 ms each, the worst turns of the loop during the run.

Only cyclic garbage among frozen objects would wait, so every ``full_every`` seconds
everything is unfrozen and collected in one full pass: one pause an hour (0.25–0.55 s at
12,000 sites) instead of one every few seconds. It finds little: 17 objects after a
national test run here, a few dozen per 20 s of running. No library does this; it is a
dozen lines.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle() -> None:
    """Take everything alive now out of the collector's young generation (``gc.freeze``,
    O(1); it also restarts the count to the next young collection).

    Called right after building a container over every site (a snapshot's map of 12,000
    views) and after each slice of cooperative work (a scrape's 480 pieces of 500
    lines kept until the next scrape): a young collection walks every entry of every
    young container, a cache miss each, and under scraping such collections took 5–13 ms
    of the loop here, the worst of its lag (found with ``gc.callbacks``). What is frozen
    is freed by reference counting all the same, and the hourly full pass sees it."""
    gc.freeze()


class GcPacer:
    def __init__(self, *, full_every: float = 3600.0) -> None:
        self.full_every = full_every
        self._next_full = time.monotonic() + full_every
        self.full_collections = 0

    def start(self) -> None:
        """Freeze what survives each collection, from now until ``stop`` (a process-wide
        hook: the daemon's, for as long as it runs)."""
        if self._after_collection not in gc.callbacks:
            gc.callbacks.append(self._after_collection)

    def stop(self) -> None:
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)

    def _after_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            gc.freeze()

    def step(self, now: float | None = None) -> None:
        """Call often (every second): the full collection, when it is due."""
        now = time.monotonic() if now is None else now
        if now < self._next_full:
            return
        self._next_full = now + self.full_every
        started = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        self.full_collections += 1
        log.debug("full garbage collection: %d freed in %.3f s", freed,
                  time.perf_counter() - started)
