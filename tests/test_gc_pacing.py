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


def test_survivors_are_frozen_when_due_and_not_before() -> None:
    pacer = GcPacer(freeze_every=1.0, full_every=3600.0)
    start = pacer._next_freeze - 1.0
    keep = [Node() for _ in range(100)]
    pacer.step(start + 0.5)
    assert gc.get_freeze_count() == 0
    pacer.step(start + 1.0)
    frozen = gc.get_freeze_count()
    assert frozen >= len(keep)
    more = [Node() for _ in range(100)]
    pacer.step(start + 1.5)
    assert gc.get_freeze_count() == frozen  # not due again yet
    pacer.step(start + 2.0)
    assert gc.get_freeze_count() >= frozen + len(more)


def test_a_frozen_cycle_waits_for_the_full_pass_and_is_freed_by_it() -> None:
    pacer = GcPacer(freeze_every=1.0, full_every=10.0)
    start = pacer._next_full - 10.0
    ref = _cycle()
    pacer.step(start + 1.0)  # frozen while alive... and now garbage, but frozen
    gc.collect(0)
    gc.collect(1)
    assert ref() is not None  # automatic (partial) collections never look at it
    pacer.step(start + 10.0)
    assert ref() is None
    assert pacer.full_collections == 1
    assert gc.get_freeze_count() > 0  # everything alive is frozen again after the pass
