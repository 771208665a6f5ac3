"""Keeping CPython's full garbage collections off the engine's loop.

The windows and views of a national inventory hold about 600,000 container objects that
live one to five rounds and die by reference counting, not in cycles. CPython still scans
every one of them in each full (generation 2) collection, which it starts whenever a
quarter more objects have survived since the last one: every few seconds at 12,000 sites,
0.1–0.25 s each, on the event loop (measured here with ``gc.callbacks``) — long enough to
delay echo sends, deadlines and pacing, and to show as ``bridgemon_event_loop_lag_seconds``.

So every ``freeze_every`` seconds what has survived is moved to the permanent generation
(``gc.freeze``, O(1)), where automatic collections never look; frozen objects freed later by
reference counting are freed all the same. Four times a second: at 12,000 sites about
10,000 container objects a second (bursts and coroutines in flight) survive the youngest
generation, so every few seconds a generation-1 pass scanned them, 10-30 ms each on the
loop (measured here with ``gc.callbacks``, still at one freeze a second); frozen every
0.25 s, generation 1 never fills (no pass at all in a minute under scraping).

Only cyclic garbage among frozen objects would wait, so every ``full_every`` seconds
everything is unfrozen and collected in one full pass: one pause an hour (0.25–0.55 s at
12,000 sites; it frees a few dozen objects per 20 s of running, cyclic garbage is rare
here) instead of one every few seconds. No library does this; it is a dozen lines.
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
    def __init__(self, *, freeze_every: float = 0.25, full_every: float = 3600.0) -> None:
        self.freeze_every = freeze_every
        self.full_every = full_every
        now = time.monotonic()
        self._next_freeze = now + freeze_every
        self._next_full = now + full_every
        self.full_collections = 0

    def step(self, now: float | None = None) -> None:
        """Call often (every second); does what is due."""
        now = time.monotonic() if now is None else now
        if now >= self._next_full:
            self._next_full = now + self.full_every
            self._next_freeze = now + self.freeze_every
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            gc.freeze()
            self.full_collections += 1
            log.debug("full garbage collection: %d freed in %.3f s", freed,
                      time.perf_counter() - started)
        elif now >= self._next_freeze:
            self._next_freeze = now + self.freeze_every
            gc.freeze()
