"""The site tree: levels, sites, parents and children, and selectors over them.

Built only by the loader (config_inventory.py) from a validated file; immutable
afterwards, so a reload builds a new Inventory and swaps it whole. An Inventory is a forest
by construction: one whose parents run in a cycle cannot be built, so every walk down from
a site ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from bridgemon.cooperative import Steps, drain
from bridgemon.specs import CheckSpec, IcmpSpec, Thresholds, in_rounds

_STEP = 1000  # sites a selection goes through between two pauses


class SelectorError(ValueError):
    """A selector names something the inventory does not have (``site``: the site id)."""

    def __init__(self, message: str, site: str | None = None) -> None:
        super().__init__(message)
        self.site = site


class ParentCycleError(ValueError):
    """Sites whose parents lead back to themselves: not a tree."""

    def __init__(self, cycles: list[tuple[str, ...]]) -> None:
        self.cycles = cycles
        super().__init__("; ".join(
            "parent cycle: " + " -> ".join(repr(site_id) for site_id in (*cycle, cycle[0]))
            for cycle in cycles
        ))


def parent_cycles(parents: Mapping[str, str | None]) -> list[tuple[str, ...]]:
    """Every cycle of ``site id -> parent id`` (a site that is its own parent is a cycle of
    one), each once, starting at the site where a walk up from the sites, taken in mapping
    order, first enters it."""
    cycles: list[tuple[str, ...]] = []
    done: set[str] = set()  # sites whose way up is known to end (or to join a known cycle)
    for start in parents:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node in parents and node not in done and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = parents[node]
        if node is not None and node in on_path:
            cycles.append(tuple(path[path.index(node) :]))
        done.update(path)
    return cycles


@dataclass(frozen=True, slots=True)
class Level:
    id: str
    name: str
    profile: str
    parents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Contact:
    name: str | None = None
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    level: str
    address: str
    parent: str | None
    profile: str
    contact: Contact | None
    labels: dict[str, str]
    interval: float
    icmp: IcmpSpec
    thresholds: Thresholds
    checks: tuple[CheckSpec, ...] = ()
    line: int = 0
    # The most time this site's probes can take in one round (packet trains and MTU checks
    # not run in the rounds do not count); read at every judgement, so worked out once.
    longest_probe: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "longest_probe", max([
            self.icmp.duration,
            *(check.timeout for check in self.checks if in_rounds(check)),
        ]))

    def probe_key(self) -> tuple[object, ...]:
        """What decides the measurements: when it changes on reload, the window restarts."""
        return (self.address, self.icmp, self.interval, self.checks)


@dataclass(frozen=True)
class Inventory:
    levels: tuple[Level, ...]
    sites: dict[str, Site]
    children: dict[str, tuple[str, ...]] = field(init=False)
    roots: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        cycles = parent_cycles({site_id: site.parent for site_id, site in self.sites.items()})
        if cycles:
            raise ParentCycleError(cycles)
        children: dict[str, list[str]] = {site_id: [] for site_id in self.sites}
        roots: list[str] = []
        for site in self.sites.values():
            if site.parent is None or site.parent not in self.sites:
                roots.append(site.id)
            else:
                children[site.parent].append(site.id)
        object.__setattr__(self, "children", {k: tuple(v) for k, v in children.items()})
        object.__setattr__(self, "roots", tuple(roots))

    def __len__(self) -> int:
        return len(self.sites)

    def level(self, level_id: str) -> Level:
        for level in self.levels:
            if level.id == level_id:
                return level
        raise KeyError(level_id)

    def walk(self) -> Iterator[tuple[Site, int]]:
        """Every site depth-first in file order, with its depth (0 at the top)."""
        stack = [(root, 0) for root in reversed(self.roots)]
        while stack:
            site_id, depth = stack.pop()
            yield self.sites[site_id], depth
            stack.extend((child, depth + 1) for child in reversed(self.children[site_id]))

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Site ids in ``walk`` order, computed once: readers at scale iterate this."""
        return tuple(site.id for site, _ in self.walk())

    @cached_property
    def depths(self) -> dict[str, int]:
        return {site.id: depth for site, depth in self.walk()}

    @cached_property
    def level_counts(self) -> dict[str, int]:
        """Sites per level id (shared: do not change it)."""
        counts: dict[str, int] = {}
        for site in self.sites.values():
            counts[site.level] = counts.get(site.level, 0) + 1
        return counts

    def ancestors(self, site_id: str) -> list[Site]:
        """Parent first, up to the top."""
        out: list[Site] = []
        parent = self.sites[site_id].parent
        while parent is not None and parent in self.sites and len(out) < len(self.sites):
            out.append(self.sites[parent])
            parent = self.sites[parent].parent
        return out

    def descendants(self, site_id: str) -> list[str]:
        out: list[str] = []
        stack = list(reversed(self.children.get(site_id, ())))
        while stack:
            child = stack.pop()
            out.append(child)
            stack.extend(reversed(self.children[child]))
        return out

    def select(self, expression: str) -> list[Site]:
        """Sites matching a selector, in tree order.

        A selector is a comma-separated union of: a site id, ``level:LEVEL`` or
        ``under:ID`` (that site and everything below it). ``*`` or ``all`` is every site.
        """
        return drain(self.select_in_steps(expression))

    def select_in_steps(self, expression: str) -> Steps[list[Site]]:
        """``select``, pausing (yielding) every ``_STEP`` sites, for a caller on the event
        loop (``cooperative.run``): a selector is judged before the first pause."""
        wanted: set[str] = set()
        terms = [term.strip() for term in expression.split(",")]
        if not any(terms):
            raise SelectorError("empty selector: give a site id, level:LEVEL or under:ID")
        for term in terms:
            if not term:
                continue
            if term in ("*", "all"):
                wanted.update(self.sites)
            elif term.startswith("level:"):
                level_id = term.removeprefix("level:")
                if level_id not in {level.id for level in self.levels}:
                    known = ", ".join(level.id for level in self.levels)
                    raise SelectorError(f"unknown level {level_id!r} in {term!r} (levels: {known})")
                wanted.update(s.id for s in self.sites.values() if s.level == level_id)
            elif term.startswith("under:"):
                site_id = term.removeprefix("under:")
                if site_id not in self.sites:
                    raise SelectorError(f"unknown site {site_id!r} in {term!r}", site_id)
                wanted.add(site_id)
                wanted.update(self.descendants(site_id))
            elif term in self.sites:
                wanted.add(term)
            else:
                raise SelectorError(f"unknown site id {term!r}", term)
        return (yield from self.in_order(wanted))

    def in_order(self, wanted: set[str]) -> Steps[list[Site]]:
        """The sites of ``wanted`` in tree order (ids not in the inventory left out),
        pausing every ``_STEP`` sites."""
        chosen: list[Site] = []
        sites = self.sites
        for index, site_id in enumerate(self.order, 1):
            if site_id in wanted:
                chosen.append(sites[site_id])
            if index % _STEP == 0:
                yield
        return chosen
