"""Letting the event loop have the GIL back at once when a worker thread computes.

The daemon hands a few CPU-bound jobs to threads (rendering a page of 12,000 sites,
loading a reloaded inventory, compressing /metrics, writing test-run history). CPython
gives such a thread the GIL for up to ``sys.getswitchinterval()`` (5 ms by default) each
time the loop's thread lets it go — and the loop lets it go on every system call: each
echo sent, each reply read. With a busy thread the loop thus waits up to 5 ms per call
("the convoy effect"): measured here, 20 sends in one loop iteration took 171 ms at p99
beside a thread doing Python work, 36 ms with a 1 ms interval and 3 ms with 0.5 ms (0.2 ms
with no thread at all). That is the loop lag the engine's pacing and the
``bridgemon_event_loop_lag_seconds`` alert see.

The interval only matters while another thread wants the GIL, so a shorter one costs
nothing when no worker runs, and a few more hand-overs per second while one does.
"""

from __future__ import annotations

import sys

#: Seconds a thread may hold the GIL while another waits for it.
SWITCH_INTERVAL = 0.0005


def share_promptly() -> None:
    """Shorten the GIL's switch interval for the whole process (idempotent)."""
    if sys.getswitchinterval() > SWITCH_INTERVAL:
        sys.setswitchinterval(SWITCH_INTERVAL)
