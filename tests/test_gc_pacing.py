"""GC pacing: survivors are frozen out of automatic collections, and a periodic full pass
still frees the cycles among them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bridgemon.gc_pacing import GcPacer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_what_survives_a_collection_is_frozen_while_the_pacer_runs() -> None:
    pacer = GcPacer()
    pacer.start()
    try:
        pacer.start()  # twice is once
        keep = [Node() for _ in range(100)]
        assert gc.get_freeze_count() == 0
        gc.collect(0)  # as the allocations of a busy loop start it
        frozen = gc.get_freeze_count()
        assert frozen >= len(keep)
        assert gc.get_count()[1] == 0 and not gc.get_objects(1)  # nothing left to walk
        more = [Node() for _ in range(100)]
        gc.collect(1)
        assert gc.get_freeze_count() >= frozen + len(more)
    finally:
        pacer.stop()
    assert pacer._after_collection not in gc.callbacks
    gc.unfreeze()
    gc.collect(0)
    assert gc.get_freeze_count() == 0  # stopped: collections are CPython's own again


def test_a_frozen_cycle_waits_for_the_full_pass_and_is_freed_by_it() -> None:
    pacer = GcPacer(full_every=10.0)
    start = pacer._next_full - 10.0
    pacer.start()
    try:
        ref = _cycle()
        alive = ref()
        gc.collect(0)  # survives, alive...
        del alive  # ...and now garbage, but frozen
        gc.collect(0)
        gc.collect(1)
        assert ref() is not None  # automatic (partial) collections never look at it
        pacer.step(start + 9.0)
        assert ref() is not None and pacer.full_collections == 0  # not due yet
        pacer.step(start + 10.0)
        assert ref() is None
        assert pacer.full_collections == 1
        assert gc.get_freeze_count() > 0  # everything alive is frozen again after the pass
    finally:
        pacer.stop()
