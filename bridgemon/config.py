"""The inventory file: TOML -> a validated, fully resolved configuration, or every error.

``load_config(path)`` either returns a complete ``Config`` or raises ``ConfigError`` that
carries ALL the problems found, each as ``PATH:LINE: field: message``. Nothing is ever
half-loaded: the caller swaps configurations only on success (a bad reload keeps the old
one running).

Shape checks (types, unknown keys, ranges) are pydantic's; relations between entries
(duplicate ids, parents, levels, profiles) are checked here after it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from bridgemon.config_checks import HOSTNAME, CheckModel, is_host, resolve_checks
from bridgemon.config_source import (
    SourceMap,
    deepest_nesting,
    line_count,
    longest_number,
    toml_key,
)
from bridgemon.durations import Duration, format_duration
from bridgemon.events import Event, EventModel, build_event
from bridgemon.inventory import Contact, Inventory, Level, Site, parent_cycles
from bridgemon.specs import CheckSpec, IcmpSpec, Thresholds

DEFAULT_CONFIG = Path("config/sites.toml")
DEFAULT_LEVELS = ("province", "district", "commune")
DEFAULT_LISTEN = "127.0.0.1:9470"

# fullmatch, never match with "$": "$" also matches before a final newline.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL = re.compile(r"[a-z_][a-z0-9_]*")
RESERVED_LABELS = frozenset(
    {"site", "name", "level", "parent", "address", "contact", "phone", "profile", "instance", "job"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IcmpOverride(_Strict):
    count: int | None = Field(default=None, ge=1, le=1000)
    spacing: Duration | None = Field(default=None, ge=0.001, le=60)
    timeout: Duration | None = Field(default=None, ge=0.01, le=30)
    size: int | None = Field(default=None, ge=8, le=65000)


class ThresholdsOverride(_Strict):
    rtt_good: Duration | None = Field(default=None, gt=0)
    rtt_bad: Duration | None = Field(default=None, gt=0)
    jitter_good: Duration | None = Field(default=None, gt=0)
    jitter_bad: Duration | None = Field(default=None, gt=0)
    loss_good: float | None = Field(default=None, ge=0, le=1)
    loss_bad: float | None = Field(default=None, ge=0, le=1)


class ProfileModel(_Strict):
    interval: Duration | None = Field(default=None, ge=1, le=86400)
    icmp: IcmpOverride = IcmpOverride()
    thresholds: ThresholdsOverride = ThresholdsOverride()
    checks: dict[str, CheckModel] = {}


class MonitorModel(_Strict):
    listen: str = DEFAULT_LISTEN
    interval: Duration = Field(default=30.0, ge=1, le=86400)
    window: int = Field(default=5, ge=1, le=1000)
    spread: float = Field(default=0.8, gt=0, le=1)
    max_concurrency: int = Field(default=4000, ge=1, le=1_000_000)
    icmp_mode: Literal["auto", "raw", "dgram"] = "auto"
    resolve_timeout: Duration = Field(default=2.0, gt=0, le=60)
    check_sockets: int = Field(default=512, ge=1, le=65536)
    state_dir: str | None = Field(default=None, min_length=1)  # see _state_dir
    event_window: Duration = Field(default=7 * 86400.0, gt=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


class LevelModel(_Strict):
    id: str
    name: str | None = None
    profile: str = "default"
    parents: list[str] | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value)


class ContactModel(_Strict):
    name: str | None = None
    phone: str | None = None
    email: str | None = None


class SiteModel(_Strict):
    id: str
    name: str = Field(min_length=1)
    level: str
    address: str
    parent: str | None = None
    profile: str | None = None
    contact: ContactModel | None = None
    labels: dict[str, str] = {}
    icmp: IcmpOverride = IcmpOverride()
    thresholds: ThresholdsOverride = ThresholdsOverride()
    checks: dict[str, CheckModel] = {}

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _check_id(value)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL.fullmatch(key):
                raise ValueError(f"label name {key!r} must match [a-z_][a-z0-9_]*")
            if key in RESERVED_LABELS or key.startswith("__"):
                raise ValueError(f"label name {key!r} is reserved by bridgemon")
        return value


class TestModel(_Strict):
    """Defaults of pre-event test runs (``bridgemon test`` and scheduled ones)."""

    count: int = Field(default=50, ge=1, le=1000)
    spacing: Duration = Field(default=0.1, ge=0.01, le=10)
    timeout: Duration = Field(default=1.0, ge=0.05, le=30)
    concurrency: int = Field(default=1000, ge=1, le=100_000)


class ApiModel(_Strict):
    """The mutating API needs a bearer token; without one configured it is refused."""

    token: str | None = Field(default=None, min_length=16)
    token_env: str = "BRIDGEMON_API_TOKEN"


class ConfigModel(_Strict):
    monitor: MonitorModel = MonitorModel()
    test: TestModel = TestModel()
    api: ApiModel = ApiModel()
    events: list[EventModel] = []
    levels: list[LevelModel] = Field(
        default_factory=lambda: [
            LevelModel(id="province", name="Cấp tỉnh"),
            LevelModel(id="district", name="Cấp huyện"),
            LevelModel(id="commune", name="Cấp xã"),
        ],
        min_length=1,
    )
    profiles: dict[str, ProfileModel] = {}
    sites: list[SiteModel] = []


def _check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(
            f"bad id {value!r}: use letters, digits, '.', '_' or '-' (at most 64, no spaces)"
        )
    return value


def check_address(value: str) -> str:
    """An IP literal or a DNS host name; ValueError with the reason otherwise."""
    text = value.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if not HOSTNAME.fullmatch(text) or text.replace(".", "").isdigit():
            raise ValueError(
                f"bad address {value!r}: give an IPv4/IPv6 address or a host name"
            ) from None
        return text
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"bad address {value!r}: unspecified or multicast address")
    return str(ip)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen must be HOST:PORT (e.g. {DEFAULT_LISTEN!r}), got {value!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"listen must name a host (e.g. {DEFAULT_LISTEN!r}), got {value!r}")
    if not is_host(host):  # else the daemon dies binding it (UnicodeError, not OSError)
        raise ValueError(f"listen must name an IP address or a host name, got {value!r}")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return _one_line(f"{self.path}:{self.line}: {where}{self.message}")


def _one_line(text: str) -> str:
    """Messages quote user values with repr(); this is the guarantee behind that: no
    character that any reader (str.splitlines, a terminal, a log) takes for a line break
    or a control code gets out raw, so one issue is always exactly one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class ConfigError(Exception):
    """Every problem found in one configuration file."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(set(issues), key=lambda issue: (issue.path, issue.line))
        super().__init__("\n".join(str(issue) for issue in self.issues))


@dataclass(frozen=True)
class MonitorSettings:
    listen: tuple[str, int]
    interval: float
    window: int
    spread: float
    max_concurrency: int
    icmp_mode: Literal["auto", "raw", "dgram"]
    resolve_timeout: float
    check_sockets: int
    state_dir: Path  # absolute
    event_window: float


@dataclass(frozen=True)
class TestSettings:
    count: int
    spacing: float
    timeout: float
    concurrency: int


@dataclass(frozen=True)
class Config:
    path: Path
    monitor: MonitorSettings
    inventory: Inventory
    test: TestSettings = field(default_factory=lambda: TestSettings(50, 0.1, 1.0, 1000))
    events: tuple[Event, ...] = ()
    api_token: str | None = None
    warnings: tuple[ConfigIssue, ...] = field(default=())


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The contract: -c PATH, else $BRIDGEMON_CONFIG, else ./config/sites.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("BRIDGEMON_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def load_config(path: str | os.PathLike[str]) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), 0, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), 0, "", f"cannot read: {exc}")]) from None
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    name = str(path)
    raw = _parse_toml(text, name)
    source = SourceMap(text)
    issues: list[ConfigIssue] = []

    def issue(loc: tuple[str | int, ...], message: str) -> None:
        issues.append(ConfigIssue(name, source.line_of(loc), _dotted(loc), message))

    model, all_site_ids = _validate_shapes(raw, issue, path.absolute().parent)

    warnings: list[ConfigIssue] = []
    inventory = _build_inventory(model, all_site_ids, issue, warnings, source, name)
    events: list[Event] = []
    if inventory is not None:
        seen_events: set[str] = set()
        for i, event_model in enumerate(model.events):
            if event_model.id in seen_events:
                issue(("events", i, "id"), f"duplicate event id {event_model.id!r}")
                continue
            seen_events.add(event_model.id)
            event = build_event(event_model, inventory, issue, ("events", i),
                                broken=all_site_ids - inventory.sites.keys())
            if event is not None:
                events.append(event)
    if issues:
        raise ConfigError(issues)
    assert inventory is not None
    monitor = model.monitor
    return Config(
        path=path,
        monitor=MonitorSettings(
            listen=parse_listen(monitor.listen),
            interval=monitor.interval,
            window=monitor.window,
            spread=monitor.spread,
            max_concurrency=monitor.max_concurrency,
            icmp_mode=monitor.icmp_mode,
            resolve_timeout=monitor.resolve_timeout,
            check_sockets=monitor.check_sockets,
            state_dir=_state_dir(monitor.state_dir, path),
            event_window=monitor.event_window,
        ),
        inventory=inventory,
        test=TestSettings(model.test.count, model.test.spacing, model.test.timeout,
                          model.test.concurrency),
        events=tuple(events),
        api_token=model.api.token or os.environ.get(model.api.token_env) or None,
        warnings=tuple(warnings),
    )


def _parse_toml(text: str, name: str) -> dict[str, Any]:
    """tomllib's document, or its complaint as PATH:LINE. Besides TOMLDecodeError it can
    raise RecursionError (arrays nested a thousand deep) and ValueError (an integer past
    Python's 4300-digit conversion limit); neither says where, so the line is found here."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match.group(1)) if match else line_count(text)
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        issue = ConfigIssue(name, line, "", f"TOML syntax: {message}")
    except RecursionError:
        depth, line = deepest_nesting(text)
        issue = ConfigIssue(name, line, "", f"TOML nested too deeply ({depth} levels of "
                                            "arrays or inline tables)")
    except ValueError:
        digits, line = longest_number(text)
        issue = ConfigIssue(name, line, "", f"a number of {digits} digits is too long "
                                            f"(at most {sys.get_int_max_str_digits()})")
    raise ConfigError([issue])


def _state_dir(written: str | None, path: Path) -> Path:
    """[monitor] state_dir, else $STATE_DIRECTORY (systemd's StateDirectory=), else
    ``state`` — a relative one next to the config file, never in whatever directory the
    command happens to be started from: ``bridgemon test`` from a shell and the daemon
    must share one history."""
    chosen = written or os.environ.get("STATE_DIRECTORY")
    if chosen is None:
        return path.absolute().parent / "state"
    if written is None:  # from the environment: relative to where we were started
        return Path(chosen).absolute()
    return path.absolute().parent / chosen


def _validate_shapes(
    raw: dict[str, Any], issue: Any, base: Path
) -> tuple[ConfigModel, set[str]]:
    """Validate section by section and site by site, so one bad site does not hide the
    relation errors of all the others. Returns the valid parts and every written site id.
    ``base`` (the config file's directory) is where relative file names (ca_file) start."""
    context = {"base": base, "loaded": {}}

    def report(exc: ValidationError, prefix: tuple[str | int, ...]) -> None:
        for error in exc.errors(include_url=False):
            issue((*prefix, *error["loc"]), _pydantic_message(error))

    sites_raw = raw.get("sites", [])
    rest = {key: value for key, value in raw.items() if key != "sites"}
    sections: dict[str, Any] = {}
    for key, value in rest.items():
        try:
            sections[key] = getattr(
                ConfigModel.model_validate({key: value}, context=context), key, None
            )
        except ValidationError as exc:
            report(exc, ())
    model = ConfigModel.model_validate({k: v for k, v in sections.items() if v is not None})
    if not isinstance(sites_raw, list):
        issue(("sites",), "sites must be an array of tables: write each site under [[sites]]")
        return model, set()
    sites: list[SiteModel] = []
    written_ids: set[str] = set()
    for i, site_raw in enumerate(sites_raw):
        if isinstance(site_raw, dict) and isinstance(site_raw.get("id"), str):
            written_ids.add(site_raw["id"])
        try:
            sites.append(SiteModel.model_validate(site_raw, context=context))
        except ValidationError as exc:
            report(exc, ("sites", i))
            sites.append(None)  # type: ignore[arg-type]  # keeps indexes aligned with lines
    return model.model_copy(update={"sites": sites}), written_ids


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        key = toml_key(part)
        out += f".{key}" if out and not isinstance(part, int) else key
    return out


def _pydantic_message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/inventory.md)"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _build_inventory(
    model: ConfigModel,
    written_ids: set[str],
    issue: Any,
    warnings: list[ConfigIssue],
    source: SourceMap,
    name: str,
) -> Inventory | None:
    # Levels: unique ids, parents that exist.
    level_index: dict[str, int] = {}
    for i, level in enumerate(model.levels):
        if level.id in level_index:
            issue(("levels", i, "id"), f"duplicate level {level.id!r}")
        level_index.setdefault(level.id, i)
    levels: list[Level] = []
    for i, level in enumerate(model.levels):
        parents: tuple[str, ...]
        if level.parents is None:
            parents = (model.levels[i - 1].id,) if i > 0 else ()
        else:
            for parent in level.parents:
                if parent not in level_index:
                    issue(("levels", i, "parents"), f"unknown level {parent!r}")
                elif parent == level.id:
                    issue(("levels", i, "parents"), "a level cannot be its own parent level")
            # only known ids go on: the sites' messages print them
            parents = tuple(parent for parent in level.parents if parent in level_index)
        if level.profile != "default" and level.profile not in model.profiles:
            issue(("levels", i, "profile"), f"unknown profile {level.profile!r}")
        levels.append(
            Level(id=level.id, name=level.name or level.id, profile=level.profile, parents=parents)
        )
    levels_by_id = {level.id: level for level in levels}

    # Profiles: resolved on top of the built-in defaults; burst must fit the interval.
    # Layers, later wins: built-in defaults, [profiles.default], the named profile, the site.
    base = model.profiles.get("default", ProfileModel())

    def resolve(
        loc: tuple[str | int, ...], profile_name: str, profile: ProfileModel,
        site: SiteModel | None = None,
    ) -> tuple[float, IcmpSpec, Thresholds, tuple[CheckSpec, ...]] | None:
        site_icmp = site.icmp if site is not None else None
        site_thresholds = site.thresholds if site is not None else None
        interval = profile.interval or base.interval or model.monitor.interval
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
            issue(
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
                issue(
                    (*loc, "thresholds", f"{metric}_good"),
                    f"{metric}_good ({good:g}) is worse than {metric}_bad ({bad:g})",
                )
                ok = False
        check_layers: list[tuple[tuple[str | int, ...], dict[str, CheckModel]]] = [
            (("profiles", "default"), base.checks)
        ]
        if profile_name != "default":
            check_layers.append((("profiles", profile_name), profile.checks))
        if site is not None:
            check_layers.append((loc, site.checks))
        checks = resolve_checks(loc, check_layers, interval, issue)
        if checks is None:
            return None
        return (interval, icmp, thresholds, checks) if ok else None

    profiles = dict(model.profiles)
    profiles.setdefault("default", ProfileModel())
    bad_profiles = {
        profile_name
        for profile_name, profile in model.profiles.items()
        if resolve(("profiles", profile_name), profile_name, profile) is None
    }

    # Sites: unique ids, known levels/profiles, parents at an allowed level, no cycles.
    first_seen: dict[str, int] = {}
    by_address: dict[str, int] = {}
    for i, site in enumerate(model.sites):
        if site is None:
            continue
        if site.id in first_seen:
            other = source.line_of(("sites", first_seen[site.id], "id"))
            issue(("sites", i, "id"), f"duplicate site id {site.id!r} (first at line {other})")
        else:
            first_seen[site.id] = i
        if site.address in by_address:
            other = source.line_of(("sites", by_address[site.address], "address"))
            warnings.append(
                ConfigIssue(
                    name,
                    source.line_of(("sites", i, "address")),
                    f"sites[{i}].address",
                    f"address {site.address} is also used by the site at line {other}",
                )
            )
        else:
            by_address[site.address] = i

    sites: dict[str, Site] = {}
    for i, site in enumerate(model.sites):
        if site is None or first_seen.get(site.id) != i:
            continue
        site_level = levels_by_id.get(site.level)
        if site_level is None:
            known = ", ".join(repr(level_id) for level_id in levels_by_id)
            issue(("sites", i, "level"), f"unknown level {site.level!r} (levels: {known})")
            continue
        if site.parent is None and site_level.parents:
            issue(
                ("sites", i, "parent"),
                f"a {site_level.id} site needs a parent ({' or '.join(site_level.parents)})",
            )
        elif site.parent is not None:
            if not site_level.parents:
                issue(("sites", i, "parent"),
                      f"a {site_level.id} site is at the top; it has no parent")
            elif site.parent == site.id:
                issue(("sites", i, "parent"), "a site cannot be its own parent")
            elif site.parent not in first_seen:
                if site.parent not in written_ids:  # else that site's own error says why
                    issue(("sites", i, "parent"), f"unknown parent site {site.parent!r}")
            else:
                parent_level = model.sites[first_seen[site.parent]].level
                # (an unknown parent_level is that site's own error, reported there)
                if parent_level in levels_by_id and parent_level not in site_level.parents:
                    issue(
                        ("sites", i, "parent"),
                        f"parent {site.parent!r} is a {parent_level} site; a {site_level.id} "
                        f"site's parent must be a {' or '.join(site_level.parents)} site",
                    )
        profile_name = site.profile or site_level.profile
        profile = profiles.get(profile_name)
        if profile is None:
            issue(("sites", i, "profile"), f"unknown profile {profile_name!r}")
            continue
        overridden = (
            site.icmp != IcmpOverride() or site.thresholds != ThresholdsOverride() or site.checks
        )
        if profile_name in bad_profiles and not overridden:
            continue  # the profile's own error says it once, not once per site
        resolved = resolve(("sites", i), profile_name, profile, site)
        if resolved is None:
            continue
        interval, icmp, thresholds, checks = resolved
        contact = None
        if site.contact is not None:
            contact = Contact(site.contact.name, site.contact.phone, site.contact.email)
        sites[site.id] = Site(
            id=site.id,
            name=site.name,
            level=site.level,
            address=site.address,
            parent=site.parent,
            profile=profile_name,
            contact=contact,
            labels=dict(site.labels),
            interval=interval,
            icmp=icmp,
            thresholds=thresholds,
            checks=checks,
            line=source.line_of(("sites", i)),
        )

    # Cycles (possible when levels allow each other as parents). Their sites, and every
    # site below them, stay out of the Inventory, which could not be built with them.
    in_cycles: set[str] = set()
    for cycle in parent_cycles({site_id: site.parent for site_id, site in sites.items()}):
        in_cycles.update(cycle)
        if len(cycle) > 1:  # a site that is its own parent: already reported above
            issue(("sites", first_seen[cycle[0]], "parent"),
                  "parent cycle: " + " -> ".join([*cycle, cycle[0]]))
    if in_cycles:
        sites = {site_id: site for site_id, site in sites.items()
                 if not _leads_to(site_id, in_cycles, sites)}
    return Inventory(levels=tuple(levels), sites=sites)


def _leads_to(site_id: str, targets: set[str], sites: dict[str, Site]) -> bool:
    """Whether ``site_id`` or a site above it is in ``targets`` (a set that holds every
    cycle, so the walk up ends)."""
    node: str | None = site_id
    while node is not None and node in sites:
        if node in targets:
            return True
        node = sites[node].parent
    return False
