"""``/metrics?part=N/M``: one of M disjoint parts of the exposition, for large inventories.

Prometheus parses and stores every sample of a scrape in one go, and at 12,000 sites
(240,000 samples) that alone takes it 0.5-1 s on a small server, however fast the exporter
answers. Split into parts — each a target of its own in the scrape configuration — every
scrape stays short and Prometheus ingests them side by side: the way kube-state-metrics
shards a large exposition. docs/monitoring.md has the scrape configuration (a ``part``
label per target, dropped from the samples, so every series stays the one a single target
gives).

A site belongs to one part by rendezvous hashing of its id (``shards.owner``): no site
moves while M stays, and going from M to M+1 parts moves about 1/(M+1) of them. The
daemon's own figures, the vantage's and the events go with part 1 only.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridgemon.cooperative import Steps
from bridgemon.shards import Shard, owner

MAX_PARTS = 16
_SITES_PER_STEP = 250  # rendezvous weights of 250 sites: about a millisecond here


class BadPart(ValueError):
    pass


def parse_part(text: str) -> Shard:
    """``"N/M"`` with 1 ≤ N ≤ M ≤ MAX_PARTS; BadPart saying what is wrong otherwise."""
    index_text, slash, count_text = text.partition("/")
    if not (slash and index_text.strip().isdigit() and count_text.strip().isdigit()):
        raise BadPart(f"part must be N/M, part N of M parts of the scrape (e.g. '2/4'), "
                      f"got {text!r}")
    index, count = int(index_text), int(count_text)
    if not 1 <= count <= MAX_PARTS:
        raise BadPart(f"part {text!r}: M must be between 1 and {MAX_PARTS}")
    if not 1 <= index <= count:
        raise BadPart(f"part {text!r}: N must be between 1 and {count} (parts count from 1)")
    return Shard(index, count)


# The parts of the last order asked about: (order, count) -> sites of each part, in order.
_PARTS: dict[tuple[int, int], tuple[Sequence[str], tuple[list[str], ...]]] = {}


def sites_steps(order: Sequence[str], part: Shard) -> Steps[Sequence[str]]:
    """The sites of ``part`` in ``order``, worked out a slice at a time the first time an
    order (a snapshot's, replaced on reload, never changed) is split in ``part.count``."""
    if part.whole:
        return order
    key = (id(order), part.count)
    known = _PARTS.get(key)
    if known is None or known[0] is not order:
        split: tuple[list[str], ...] = tuple([] for _ in range(part.count))
        for start in range(0, len(order), _SITES_PER_STEP):
            for site_id in order[start:start + _SITES_PER_STEP]:
                split[owner(site_id, part.count) - 1].append(site_id)
            yield
        if len(_PARTS) >= MAX_PARTS:  # splits of orders gone by reloads
            _PARTS.clear()
        known = _PARTS[key] = (order, split)
    return known[1][part.index - 1]
