"""The Inventory from the validated models: the relations pydantic cannot see.

``build_inventory`` takes four steps, each a function that says what it checks, all of
them reporting into one ``IssueLog``:

1. levels — ``build_levels``;
2. profiles — ``check_profiles``, with ``resolve`` (defaults ← profile ← site), which the
   sites use too;
3. sites — ``index_sites`` (ids and addresses), then ``build_sites``;
4. relations — ``check_parent``, for each site as it is built, and ``drop_cycles``
   (parents that run in a circle, and the sites below them), once they all are.

No step stops at the first problem, so a file is told all its mistakes at once. What
cannot be built (a site of an unknown level, a duplicate, a site in a parent cycle) is
left out, so that later steps and the events see only what is sound, and no mistake is
told twice. With any error the file is rejected anyway (config.py); the partial
Inventory only lets the events be checked against it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, NamedTuple

from bridgemon.config_checks import CheckModel, resolve_checks
from bridgemon.config_issues import IssueLog
from bridgemon.config_models import (
    ConfigModel,
    IcmpOverride,
    LevelModel,
    ProfileModel,
    SiteModel,
    ThresholdsOverride,
)
from bridgemon.config_source import Loc
from bridgemon.durations import format_duration
from bridgemon.inventory import Contact, Inventory, Level, Site, parent_cycles
from bridgemon.specs import CheckSpec, IcmpSpec, Thresholds


def build_inventory(
    model: ConfigModel,
    sites: Sequence[SiteModel | None],
    written_ids: Set[str],
    log: IssueLog,
) -> Inventory:
    """Every sound site of the file in an Inventory; every problem in ``log``.

    ``sites``: one per ``[[sites]]`` entry, None for one pydantic refused (its errors are
    told already); ``written_ids``: every id the file writes, valid entry or not."""
    levels = build_levels(model.levels, model.profiles.keys(), log)
    profiles = check_profiles(model.profiles, model.monitor.interval, log)
    first = index_sites(sites, log)
    built = build_sites(sites, first, written_ids, levels, profiles, log)
    return Inventory(levels=levels, sites=drop_cycles(built, first, log))


# --- levels -------------------------------------------------------------------------


def build_levels(
    written: Sequence[LevelModel], profiles: Collection[str], log: IssueLog
) -> tuple[Level, ...]:
    """Levels: each id once; each parent level written exists and is not the level itself
    (with ``parents`` left out, a level's parent is the level written above it, and the
    first has none); the profile exists ("default" always does).

    An unknown parent level is reported here and left out of the Level, since sites'
    messages print their level's parents. A duplicate level is reported and kept (the
    last one written is the one sites get)."""
    first: dict[str, int] = {}
    for i, level in enumerate(written):
        if level.id in first:
            log.error(("levels", i, "id"), f"duplicate level {level.id!r}")
        first.setdefault(level.id, i)
    levels: list[Level] = []
    for i, level in enumerate(written):
        parents: tuple[str, ...]
        if level.parents is None:
            parents = (written[i - 1].id,) if i > 0 else ()
        else:
            for parent in level.parents:
                if parent not in first:
                    log.error(("levels", i, "parents"), f"unknown level {parent!r}")
                elif parent == level.id:
                    log.error(("levels", i, "parents"),
                              "a level cannot be its own parent level")
            parents = tuple(parent for parent in level.parents if parent in first)
        if level.profile != "default" and level.profile not in profiles:
            log.error(("levels", i, "profile"), f"unknown profile {level.profile!r}")
        levels.append(
            Level(id=level.id, name=level.name or level.id, profile=level.profile, parents=parents)
        )
    return tuple(levels)


# --- profiles -----------------------------------------------------------------------


@dataclass(frozen=True)
class Profiles:
    """The profiles as written, and what resolving one on top of the others needs."""

    named: Mapping[str, ProfileModel]  # every written profile, and "default" always
    base: ProfileModel  # [profiles.default], under every other profile
    interval: float  # [monitor] interval: the one used where no profile sets one
    bad: frozenset[str] = frozenset()  # profiles with errors of their own


class Resolved(NamedTuple):
    interval: float
    icmp: IcmpSpec
    thresholds: Thresholds
    checks: tuple[CheckSpec, ...]


def check_profiles(
    written: Mapping[str, ProfileModel], interval: float, log: IssueLog
) -> Profiles:
    """Profiles: each written one resolves alone, with no site on top (see ``resolve``).

    Those that do not are remembered in ``bad``: a site that takes one as it is would
    only repeat the profile's error, so it is told once, at the profile."""
    named = dict(written)
    named.setdefault("default", ProfileModel())
    profiles = Profiles(named=named, base=written.get("default", ProfileModel()),
                        interval=interval)
    bad = {name for name, profile in written.items()
           if resolve(profiles, ("profiles", name), name, profile, None, log) is None}
    return Profiles(named=named, base=profiles.base, interval=interval, bad=frozenset(bad))


def resolve(
    profiles: Profiles,
    loc: Loc,
    profile_name: str,
    profile: ProfileModel,
    site: SiteModel | None,
    log: IssueLog,
) -> Resolved | None:
    """The settings of a site (or of a profile alone, ``site`` None), layered, later wins:
    the built-in defaults, ``[profiles.default]``, the named profile, the site's own.

    Checks that the ICMP burst (count × spacing, plus the last echo's timeout) ends
    before the interval does, that each good threshold is no worse than its bad one, and
    the service checks (``config_checks.resolve_checks``: each must time out before the
    interval). Every problem is reported at ``loc``; None if there was any."""
    base = profiles.base
    site_icmp = site.icmp if site is not None else None
    site_thresholds = site.thresholds if site is not None else None
    interval = profile.interval or base.interval or profiles.interval
    icmp_values: dict[str, Any] = {}
    threshold_values: dict[str, Any] = {}
    for icmp_layer in (base.icmp, profile.icmp, site_icmp):
        if icmp_layer is not None:
            icmp_values.update(icmp_layer.model_dump(exclude_none=True))
    for threshold_layer in (base.thresholds, profile.thresholds, site_thresholds):
        if threshold_layer is not None:
            threshold_values.update(threshold_layer.model_dump(exclude_none=True))
    icmp = IcmpSpec(**icmp_values)
    thresholds = Thresholds(**threshold_values)
    ok = True
    if icmp.duration >= interval:
        log.error(
            (*loc, "icmp"),
            f"a burst of {icmp.count} echoes {format_duration(icmp.spacing)} apart with a "
            f"{format_duration(icmp.timeout)} timeout lasts {format_duration(icmp.duration)}"
            f", not shorter than the {format_duration(interval)} interval",
        )
        ok = False
    for metric in ("rtt", "jitter", "loss"):
        good = getattr(thresholds, f"{metric}_good")
        bad = getattr(thresholds, f"{metric}_bad")
        if good > bad:
            log.error(
                (*loc, "thresholds", f"{metric}_good"),
                f"{metric}_good ({good:g}) is worse than {metric}_bad ({bad:g})",
            )
            ok = False
    check_layers: list[tuple[Loc, dict[str, CheckModel]]] = [
        (("profiles", "default"), base.checks)
    ]
    if profile_name != "default":
        check_layers.append((("profiles", profile_name), profile.checks))
    if site is not None:
        check_layers.append((loc, site.checks))
    checks = resolve_checks(loc, check_layers, interval, log.error)
    if checks is None:
        return None
    return Resolved(interval, icmp, thresholds, checks) if ok else None


# --- sites --------------------------------------------------------------------------


def index_sites(sites: Sequence[SiteModel | None], log: IssueLog) -> dict[str, int]:
    """Site ids: each once. A repeated id is an error naming the first one's line, and
    only the first is built. Two sites with one address is a warning, not an error.

    Returns each id's index in ``sites``: the entry that stands for it."""
    first: dict[str, int] = {}
    by_address: dict[str, int] = {}
    for i, site in enumerate(sites):
        if site is None:
            continue
        if site.id in first:
            other = log.line_of(("sites", first[site.id], "id"))
            log.error(("sites", i, "id"), f"duplicate site id {site.id!r} (first at line {other})")
        else:
            first[site.id] = i
        if site.address in by_address:
            other = log.line_of(("sites", by_address[site.address], "address"))
            log.warn(("sites", i, "address"),
                     f"address {site.address} is also used by the site at line {other}")
        else:
            by_address[site.address] = i
    return first


def build_sites(
    sites: Sequence[SiteModel | None],
    first: Mapping[str, int],
    written_ids: Set[str],
    levels: Sequence[Level],
    profiles: Profiles,
    log: IssueLog,
) -> dict[str, Site]:
    """Sites: a level that exists; a parent that fits it (``check_parent``); a profile
    that exists (the site's, else its level's); settings that resolve (``resolve``).

    A site of an unknown level or profile, or whose settings do not resolve, is left
    out. So is one that takes a profile with errors of its own as it is, without saying
    so again; with overrides of its own it is resolved (and told) like any other."""
    levels_by_id = {level.id: level for level in levels}
    written_levels = {site_id: _level_of(sites, i) for site_id, i in first.items()}
    built: dict[str, Site] = {}
    for i, site in enumerate(sites):
        if site is None or first.get(site.id) != i:
            continue
        site_level = levels_by_id.get(site.level)
        if site_level is None:
            known = ", ".join(repr(level_id) for level_id in levels_by_id)
            log.error(("sites", i, "level"), f"unknown level {site.level!r} (levels: {known})")
            continue
        check_parent(("sites", i), site, site_level, written_levels, written_ids,
                     levels_by_id.keys(), log)
        profile_name = site.profile or site_level.profile
        profile = profiles.named.get(profile_name)
        if profile is None:
            log.error(("sites", i, "profile"), f"unknown profile {profile_name!r}")
            continue
        overridden = (
            site.icmp != IcmpOverride() or site.thresholds != ThresholdsOverride() or site.checks
        )
        if profile_name in profiles.bad and not overridden:
            continue  # the profile's own error says it once, not once per site
        resolved = resolve(profiles, ("sites", i), profile_name, profile, site, log)
        if resolved is None:
            continue
        contact = None
        if site.contact is not None:
            contact = Contact(site.contact.name, site.contact.phone, site.contact.email)
        built[site.id] = Site(
            id=site.id,
            name=site.name,
            level=site.level,
            address=site.address,
            parent=site.parent,
            profile=profile_name,
            contact=contact,
            labels=dict(site.labels),
            interval=resolved.interval,
            icmp=resolved.icmp,
            thresholds=resolved.thresholds,
            checks=resolved.checks,
            line=log.line_of(("sites", i)),
        )
    return built


def _level_of(sites: Sequence[SiteModel | None], index: int) -> str:
    site = sites[index]
    assert site is not None  # index_sites indexes valid entries only
    return site.level


# --- relations ----------------------------------------------------------------------


def check_parent(
    loc: Loc,
    site: SiteModel,
    level: Level,
    written_levels: Mapping[str, str],
    written_ids: Set[str],
    known_levels: Collection[str],
    log: IssueLog,
) -> None:
    """A site's parent: there when its level has parent levels, absent at the top; not
    the site itself; a site of the file; and of one of its level's parent levels.

    ``written_levels`` is the level each site id is written with. A parent whose own
    entry is invalid (in ``written_ids`` only), or whose level is unknown, is not
    called unknown or misplaced here: that site's own error says why."""
    if site.parent is None:
        if level.parents:
            log.error((*loc, "parent"),
                      f"a {level.id} site needs a parent ({' or '.join(level.parents)})")
        return
    if not level.parents:
        log.error((*loc, "parent"), f"a {level.id} site is at the top; it has no parent")
    elif site.parent == site.id:
        log.error((*loc, "parent"), "a site cannot be its own parent")
    elif site.parent not in written_levels:
        if site.parent not in written_ids:
            log.error((*loc, "parent"), f"unknown parent site {site.parent!r}")
    else:
        parent_level = written_levels[site.parent]
        if parent_level in known_levels and parent_level not in level.parents:
            log.error(
                (*loc, "parent"),
                f"parent {site.parent!r} is a {parent_level} site; a {level.id} "
                f"site's parent must be a {' or '.join(level.parents)} site",
            )


def drop_cycles(
    sites: dict[str, Site], first: Mapping[str, int], log: IssueLog
) -> dict[str, Site]:
    """No parent cycles (possible when levels allow each other as parents). Each cycle is
    reported once, at the ``parent`` of its site where a walk up from the sites, taken in
    file order, enters it; a site that is its own parent was told by check_parent.

    The sites of a cycle, and every site below one, stay out: an Inventory cannot be
    built with them (its walks down must end)."""
    in_cycles: set[str] = set()
    for cycle in parent_cycles({site_id: site.parent for site_id, site in sites.items()}):
        in_cycles.update(cycle)
        if len(cycle) > 1:
            log.error(("sites", first[cycle[0]], "parent"),
                      "parent cycle: " + " -> ".join([*cycle, cycle[0]]))
    if not in_cycles:
        return sites
    return {site_id: site for site_id, site in sites.items()
            if not _leads_to(site_id, in_cycles, sites)}


def _leads_to(site_id: str, targets: set[str], sites: dict[str, Site]) -> bool:
    """Whether ``site_id`` or a site above it is in ``targets`` (a set that holds every
    cycle, so the walk up ends)."""
    node: str | None = site_id
    while node is not None and node in sites:
        if node in targets:
            return True
        node = sites[node].parent
    return False
