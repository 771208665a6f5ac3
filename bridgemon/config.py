"""The inventory file: TOML -> a validated, fully resolved configuration, or every error.

``load_config(path)`` either returns a complete ``Config`` or raises ``ConfigError`` that
carries ALL the problems found, each as ``PATH:LINE: field: message``. Nothing is ever
half-loaded: the caller swaps configurations only on success (a bad reload keeps the old
one running).

The steps, each in a module of its own: TOML (here), shapes (config_models.py:
pydantic, section by section and site by site), relations (config_inventory.py: levels,
profiles, sites, parents), then the events (events.py) against the sites that were sound.
Every step reports into one IssueLog (config_issues.py) and goes on, so all the problems
are found in one pass.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bridgemon.config_inventory import build_inventory
from bridgemon.config_issues import ConfigError, ConfigIssue, Issue, IssueLog
from bridgemon.config_models import (
    MonitorModel,
    check_vantage_name,
    parse_listen,
    validate_shapes,
)
from bridgemon.config_source import SourceMap, deepest_nesting, line_count, longest_number
from bridgemon.events import Event, EventModel, build_event
from bridgemon.inventory import Inventory
from bridgemon.shards import WHOLE, Shard, parse_shard

# What the commands take from here (the rest is the loader's own business).
__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "MonitorModel",
    "MonitorSettings",
    "TestSettings",
    "VantageSettings",
    "config_path",
    "load_config",
    "parse_config",
    "parse_listen",
]

DEFAULT_CONFIG = Path("config/sites.toml")


@dataclass(frozen=True)
class VantageSettings:
    """Where the daemon looks from: its name (the ``vantage`` label of every series), the
    anchors it probes to know it can still see the world, and when it counts as cut off."""

    name: str
    anchors: tuple[str, ...] = ()
    gateway: bool = False  # the default gateway (/proc/net/route) is an anchor too
    isolated_share: float | None = None  # also isolated when this share of sites fail


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
    shard: Shard = WHOLE
    vantage: VantageSettings = field(default_factory=lambda: VantageSettings(host_vantage()))


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


def host_vantage() -> str:
    """The default vantage name: the host's name, short (without its domain)."""
    return socket.gethostname().split(".", 1)[0] or "localhost"


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
    log = IssueLog(name, SourceMap(text))
    model, sites, written_ids = validate_shapes(raw, log.error, path.absolute().parent)
    inventory = build_inventory(model, sites, written_ids, log)
    events = _build_events(model.events, inventory, written_ids - inventory.sites.keys(),
                           log.error)
    monitor = model.monitor
    vantage_name = monitor.vantage.name or host_vantage()
    if monitor.vantage.name is None:
        try:
            check_vantage_name(vantage_name)
        except ValueError as exc:
            log.error(("monitor", "vantage", "name"),
                      f"the host name cannot be the vantage name ({exc}); set one")
    if log.errors:
        raise ConfigError(log.errors)
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
            shard=parse_shard(monitor.shard),
            vantage=VantageSettings(
                name=vantage_name, anchors=tuple(monitor.vantage.anchors),
                gateway=monitor.vantage.gateway, isolated_share=monitor.vantage.isolated_share,
            ),
        ),
        inventory=inventory,
        test=TestSettings(model.test.count, model.test.spacing, model.test.timeout,
                          model.test.concurrency),
        events=events,
        api_token=model.api.token or os.environ.get(model.api.token_env) or None,
        warnings=tuple(log.warnings),
    )


def _build_events(
    written: Sequence[EventModel], inventory: Inventory, broken: Collection[str], issue: Issue
) -> tuple[Event, ...]:
    """Events: each id once, participants among the sound sites (``build_event``).
    ``broken``: sites the file has but the inventory lacks, whose own errors are told."""
    events: list[Event] = []
    seen: set[str] = set()
    for i, event_model in enumerate(written):
        if event_model.id in seen:
            issue(("events", i, "id"), f"duplicate event id {event_model.id!r}")
            continue
        seen.add(event_model.id)
        event = build_event(event_model, inventory, issue, ("events", i), broken=broken)
        if event is not None:
            events.append(event)
    return tuple(events)


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
