"""Shards: which daemon of N probes which part of one inventory.

``shard = "N/M"`` (1-based) splits the inventory between M daemons by rendezvous
(highest-random-weight) hashing: each shard gives every key a weight, and the key goes to
the shard that weighs it highest. A shard's weight of a key does not depend on M, so going
from M to M+1 shards moves only the keys the new shard wins: about 1/(M+1) of them.

The key is a site's subtree, not the site: a commune goes with the top-level site below
the root that it lies under (in the shipped levels, its district), so a shard that holds a
commune holds its district too and ``parent_down`` is judged inside one process. The root
itself (the province, depth 0) is the parent of every subtree: every shard probes it, so
that each can tell "the province is down" itself; only one shard (the one its own id
hashes to) exports it, so the union of the shards' /metrics names each site once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

from bridgemon.inventory import Inventory

_SHARD = re.compile(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1


WHOLE = Shard(1, 1)


def parse_shard(text: str) -> Shard:
    """``"N/M"`` with 1 ≤ N ≤ M; ValueError saying what is wrong otherwise."""
    match = _SHARD.fullmatch(text)
    if match is None:
        raise ValueError(f"shard must be N/M, this daemon's number N of M daemons "
                         f"(e.g. '2/3'), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"shard {text!r}: the number of shards M must be at least 1")
    if not 1 <= index <= count:
        raise ValueError(f"shard {text!r}: N must be between 1 and {count} (shards count "
                         "from 1)")
    return Shard(index, count)


def _weight(shard_index: int, key: str) -> int:
    digest = hashlib.blake2b(f"{shard_index}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, count: int) -> int:
    """The shard (1-based, of ``count``) that wins ``key``."""
    return max(range(1, count + 1), key=lambda index: _weight(index, key))


def subtree_key(inventory: Inventory, site_id: str) -> str:
    """The id of the site's ancestor at depth 1 (itself at depth 0 or 1)."""
    chain = [site_id, *(site.id for site in inventory.ancestors(site_id))]
    return chain[-2] if len(chain) >= 2 else chain[-1]


def owners(inventory: Inventory, count: int) -> dict[str, int]:
    """Every site id -> the shard that exports it (and probes it; roots are probed by all)."""
    keys: dict[str, int] = {}
    result: dict[str, int] = {}
    for site, _depth in inventory.walk():
        key = subtree_key(inventory, site.id)
        if key not in keys:
            keys[key] = owner(key, count)
        result[site.id] = keys[key]
    return result


@dataclass(frozen=True)
class Share:
    """One shard's part: the inventory it probes (its sites and the roots above them) and
    the ids it exports (its own sites only)."""

    shard: Shard
    inventory: Inventory
    exported: frozenset[str]

    @cached_property
    def order(self) -> tuple[str, ...]:
        """The exported ids in walk order (what /metrics and the API list), computed once."""
        if self.shard.whole:
            return self.inventory.order
        return tuple(site_id for site_id in self.inventory.order if site_id in self.exported)


def share(inventory: Inventory, shard: Shard) -> Share:
    if shard.whole:
        return Share(shard, inventory, frozenset(inventory.sites))
    chosen = owners(inventory, shard.count)
    exported = frozenset(site_id for site_id, index in chosen.items() if index == shard.index)
    probed = {site_id: site for site_id, site in inventory.sites.items()
              if site_id in exported or site_id in inventory.roots}
    return Share(shard, Inventory(levels=inventory.levels, sites=probed), exported)
