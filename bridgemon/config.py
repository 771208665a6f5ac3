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

import ipaddress
import os
import re
import socket
import ssl
import sys
import time
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bridgemon.config_inventory import build_inventory
from bridgemon.config_issues import ConfigError, ConfigIssue, Issue, IssueLog
from bridgemon.config_models import (
    MonitorModel,
    WebModel,
    check_vantage_name,
    parse_listen,
    validate_shapes,
)
from bridgemon.config_source import SourceMap, deepest_nesting, line_count, longest_number
from bridgemon.events import Event, EventModel, build_event
from bridgemon.inventory import Inventory
from bridgemon.shards import WHOLE, Shard, parse_shard
from bridgemon.specs import MTU_DEFAULT_SIZE

# What the commands take from here (the rest is the loader's own business).
__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "MonitorModel",
    "MonitorSettings",
    "TestSettings",
    "TlsError",
    "VantageSettings",
    "WebSettings",
    "WebUser",
    "config_path",
    "exposure_problem",
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
    path_mtu: int = 0  # ICMP payload octets of the default path MTU check; 0: none


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class WebUser:
    name: str  # NFC
    role: Literal["viewer", "operator"]
    password_hash: str  # argon2id


class TlsError(OSError):
    """The certificate or key of [web] does not load; the message names the file."""


@dataclass(frozen=True)
class WebSettings:
    """[web]: who may see the pages and how they are served. The defaults are today's
    daemon: no users (pages open, on loopback), plain HTTP, /metrics open."""

    users: tuple[WebUser, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_hours: float = 12.0
    idle_timeout: float = 3600.0
    trusted_proxies: tuple[Network, ...] = ()
    metrics_token: str | None = None
    allow_plain_http: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def user(self, name: str) -> WebUser | None:
        for user in self.users:
            if user.name == name:
                return user
        return None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (1.2 and later), loaded from the files now; TlsError
        naming the file that does not load."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return tls_context(self.tls_cert, self.tls_key)


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Each file read and parsed alone first, so the error names the one at fault."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    for path, what in ((cert, "certificate"), (key, "private key")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TlsError(f"{path}: cannot read the TLS {what}: {exc.strerror or exc}") \
                from None
        try:
            if path is cert:
                x509.load_pem_x509_certificate(data)
            else:
                serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise TlsError(f"{path}: the private key is protected by a passphrase; give "
                           "one without (the daemon starts unattended)") from None
        except ValueError as exc:
            raise TlsError(f"{path}: not a PEM {what} ({_short(exc)})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TlsError(f"{cert}: the certificate does not match the private key "
                           f"{key}") from None
        raise TlsError(f"{cert}: cannot use this certificate with {key}: "
                       f"{_short(exc)}") from None
    return context


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]


def _loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(web: WebSettings, listen: tuple[str, int]) -> str | None:
    """Why the pages must not be served on ``listen`` as configured, or None. On loopback
    anything goes (today's daemon); an address others can reach needs users, and their
    passwords must not cross the network in clear."""
    host = listen[0]
    if _loopback_host(host):
        return None
    where = f"{host}:{listen[1]} can be reached from the network"
    if not web.users:
        return (f"{where}, and no user is configured: add [[web.users]] (`bridgemon passwd "
                "NAME` prints one) or listen on 127.0.0.1")
    if not web.tls and not web.trusted_proxies and not web.allow_plain_http:
        return (f"{where} without TLS: passwords would cross the network in clear. Give "
                "[web] tls_cert and tls_key, or trusted_proxies when a TLS reverse proxy "
                "sits in front, or allow_plain_http = true if the network is trusted")
    return None


@dataclass(frozen=True)
class Config:
    path: Path
    monitor: MonitorSettings
    inventory: Inventory
    test: TestSettings = field(
        default_factory=lambda: TestSettings(50, 0.1, 1.0, 1000, MTU_DEFAULT_SIZE))
    events: tuple[Event, ...] = ()
    api_token: str | None = None
    warnings: tuple[ConfigIssue, ...] = field(default=())
    web: WebSettings = field(default_factory=WebSettings)


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
    listen = _listen(raw, model.monitor, model.web, log.error)
    web = _web_settings(model.web, listen, path.absolute().parent, log)
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
    config = Config(
        path=path,
        monitor=MonitorSettings(
            listen=listen,
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
                          model.test.concurrency, model.test.path_mtu),
        events=events,
        api_token=model.api.token or os.environ.get(model.api.token_env) or None,
        warnings=tuple(log.warnings),
        web=web,
    )
    _empty(raw.get("sites"), sites, log.source.lines)
    return config


def _empty(*heaps: object) -> None:
    """Empty a parse's big temporaries (a 12,000-site file's parse tree, site models and
    line map) an item at a time. Let go at once when the parse returns, they are one C
    call of 25 ms that holds the GIL, and the daemon's loop waited that long for a reload
    loaded in a thread; emptied in a Python loop, the interpreter hands the GIL over
    between items."""
    for heap in heaps:
        if isinstance(heap, dict):
            while heap:
                heap.popitem()
        elif isinstance(heap, list):
            while heap:
                heap.pop()


def _listen(raw: dict[str, Any], monitor: MonitorModel, web: WebModel,
            issue: Issue) -> tuple[str, int]:
    """[web] listen, else [monitor] listen (older files), else the default; one file
    writing both is told to keep one rather than have one silently ignored."""
    old = raw.get("monitor")
    if web.listen is not None and isinstance(old, dict) and "listen" in old:
        issue(("web", "listen"), "listen is given twice, here and in [monitor]; keep it "
                                 "only here (the [monitor] key is the older spelling)")
    return parse_listen(web.listen if web.listen is not None else monitor.listen)


def _web_settings(model: WebModel, listen: tuple[str, int], base: Path,
                  log: IssueLog) -> WebSettings:
    """[web] checked as a whole: unique user names, TLS files that load (a bad one is
    told now, by check-config, not at the first connection), and a LAN listen address
    only with users."""
    seen: set[str] = set()
    for i, user in enumerate(model.users):
        if user.name in seen:
            log.error(("web", "users", i, "name"), f"duplicate user name {user.name!r}")
        seen.add(user.name)
    cert = base / model.tls_cert if model.tls_cert else None
    key = base / model.tls_key if model.tls_key else None
    if (cert is None) != (key is None):
        missing = "tls_key" if key is None else "tls_cert"
        log.error(("web", "tls_cert" if cert else "tls_key"),
                  f"TLS needs both tls_cert and tls_key; {missing} is missing")
        cert = key = None
    elif cert is not None and key is not None:
        try:
            tls_context(cert, key)
        except TlsError as exc:
            log.error(("web", "tls_key" if str(exc).startswith(str(key)) else "tls_cert"),
                      str(exc))
        else:
            _warn_expiry(cert, log)
    token = model.metrics_token or os.environ.get(model.metrics_token_env) or None
    web = WebSettings(
        users=tuple(WebUser(u.name, u.role, u.password_hash) for u in model.users),
        tls_cert=cert, tls_key=key, session_hours=model.session_hours,
        idle_timeout=model.idle_timeout,
        trusted_proxies=tuple(ipaddress.ip_network(p.strip(), strict=False)
                              for p in model.trusted_proxies),
        metrics_token=token, allow_plain_http=model.allow_plain_http,
    )
    problem = exposure_problem(web, listen)
    if problem is not None:
        log.error(("web", "listen") if model.listen else ("monitor", "listen"), problem)
    return web


def _warn_expiry(cert: Path, log: IssueLog) -> None:
    from cryptography import x509

    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return
    left = loaded.not_valid_after_utc.timestamp() - time.time()
    if left < 14 * 86400:
        state = "has expired" if left < 0 else f"expires in {left / 86400:.0f} days"
        log.warn(("web", "tls_cert"), f"{cert}: the certificate {state}; browsers will "
                                      "refuse it")


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
