"""Service checks in the inventory: ``[profiles.NAME.checks.CHECK]`` and per-site overrides.

A profile declares named checks; a site may override keys of a profile check with
``[sites.checks.CHECK]`` (same name), add a check of its own (with a ``type``), or switch
one off with ``enabled = false``. The result is one immutable spec per check (specs.py).

```toml
[profiles.codec.checks.sip]
type = "sip"              # sip | sips | h323 | tcp | http | https
transport = "udp"         # sip only: udp | tcp | tls
accept = [200, 404, 405, 501]
[profiles.codec.checks.h323]
type = "h323"             # TCP 1720
[profiles.codec.checks.web]
type = "https"
verify_tls = false        # codecs often have self-signed certificates
required = false          # failing makes the site degraded, not not_ready
[profiles.codec.checks.video]
type = "stamp"            # a packet train to the site's STAMP reflector (UDP 862)
rate = "2M"               # the conference's bitrate; size = 1200, duration = "10s",
duration = "10s"          # dscp = "AF41", reflector = "auto", wait = "1s"
rounds = false            # the default: test runs only (a train costs its bandwidth)
loss_bad = 0.03           # thresholds (stamp.train.StampThresholds): loss, jitter, rtt (p95),
                          # carried (share of the rate), mos; each *_good and *_bad
[profiles.codec.checks.mtu]
type = "mtu"              # ICMP echoes with DF set: does a 1500-octet packet get through?
size = 1472               # ICMP payload octets (+ 28 = the packet), 57-65507
rounds = false            # the default: test runs only
```

A stamp check's train is checked at load as ``stamp.TrainSpec`` checks it (rate, size,
duration within bounds, at least 10 packets), so a bad one is a ``PATH:LINE`` error, not a
failed probe; so are its thresholds, each in range and each pair in order once a site's
overrides are merged (a site raising ``loss_good`` above its profile's ``loss_bad``).
So is an mtu check's size outside 57-65507 (no IPv4 packet is larger).

``url``, ``path`` and ``ca_file`` are checked here, at load, not when the first probe
runs: a URL must be http(s)://HOST[:PORT][/PATH] with the scheme of its check, a path must
start with "/", neither may hold spaces or control characters, and a ca_file (relative to
the config file) must be a readable file that OpenSSL loads as PEM CA certificates.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator

from bridgemon.config_issues import Issue
from bridgemon.config_source import Loc
from bridgemon.durations import Duration
from bridgemon.specs import (
    MTU_MAX_SIZE,
    MTU_MIN_SIZE,
    CheckSpec,
    HttpSpec,
    MtuSpec,
    SipSpec,
    StampSpec,
    TcpSpec,
    in_rounds,
)
from bridgemon.stamp.train import (
    STAMP_THRESHOLD_KEYS,
    ReflectorMode,
    StampThresholds,
    TrainSpec,
)
from bridgemon.stamp.units import parse_dscp, parse_rate

CheckType = Literal["tcp", "h323", "http", "https", "sip", "sips", "stamp", "mtu"]
CHECK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# A DNS host name (fullmatch): what a site address or a URL's host may be besides an IP.
HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)

# Which keys mean something for which type: anything else is a mistake worth naming.
_COMMON = {"type", "enabled", "port", "timeout", "required"}
APPLIES: dict[str, set[str]] = {
    "tcp": _COMMON,
    "h323": _COMMON,
    "http": _COMMON | {"path", "url", "method", "expect_status", "follow_redirects",
                       "max_body_bytes"},
    "https": _COMMON | {"path", "url", "method", "expect_status", "follow_redirects",
                        "max_body_bytes", "verify_tls", "cert_expiry_warn", "ca_file"},
    "sip": _COMMON | {"transport", "accept", "verify_tls", "ca_file"},
    "sips": _COMMON | {"accept", "verify_tls", "ca_file"},
    # No timeout: a train lasts its duration, then waits its wait.
    "stamp": (_COMMON - {"timeout"}) | {"rate", "size", "duration", "dscp", "reflector",
                                         "wait", "rounds", *STAMP_THRESHOLD_KEYS},
    # No port (ICMP) and no timeout (a few echoes of one second each).
    "mtu": {"type", "enabled", "required", "size", "rounds"},
}
STAMP_KEYS = ("port", "rate", "size", "duration", "dscp", "reflector", "wait")


def _train_fields(values: dict[str, Any]) -> dict[str, Any]:
    """A stamp check's keys as TrainSpec's (and StampSpec's) fields: ``rate`` is
    ``rate_bps``."""
    return {("rate_bps" if key == "rate" else key): values[key]
            for key in STAMP_KEYS if key in values}


class CheckModel(BaseModel):
    """One check as written; every key optional so a site can override a few."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: CheckType | None = None
    # Strict, every true/false: pydantic's lax bool took "yes", "off" and 1, which TOML
    # writes differently (a quoted string or a number is a typo for true/false, not a choice).
    enabled: StrictBool = True
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: Duration | None = Field(default=None, gt=0, le=300)
    required: StrictBool | None = None
    transport: Literal["udp", "tcp", "tls"] | None = None
    accept: list[Annotated[int, Field(ge=200, le=699)]] | None = None
    verify_tls: StrictBool | None = None
    path: str | None = None
    url: str | None = None
    method: Literal["GET", "HEAD"] | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    follow_redirects: StrictBool | None = None
    max_body_bytes: int | None = Field(default=None, ge=0, le=16 * 1024 * 1024)
    cert_expiry_warn: Duration | None = Field(default=None, ge=0)
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's (an internal CA)
    rate: float | None = None  # stamp: bit/s, written "2M", "512k" or a number
    size: int | None = None
    duration: Duration | None = None
    dscp: int | None = None  # written "AF41" or 0-63
    reflector: ReflectorMode | None = None
    wait: Duration | None = None
    rounds: StrictBool | None = None
    # stamp thresholds (stamp.train.StampThresholds): ratios, durations, scores
    loss_good: float | None = Field(default=None, ge=0, le=1)
    loss_bad: float | None = Field(default=None, ge=0, le=1)
    jitter_good: Duration | None = Field(default=None, gt=0, le=10)
    jitter_bad: Duration | None = Field(default=None, gt=0, le=10)
    rtt_good: Duration | None = Field(default=None, gt=0, le=10)
    rtt_bad: Duration | None = Field(default=None, gt=0, le=10)
    carried_good: float | None = Field(default=None, ge=0, le=1)
    carried_bad: float | None = Field(default=None, ge=0, le=1)
    mos_good: float | None = Field(default=None, ge=1, le=5)
    mos_bad: float | None = Field(default=None, ge=1, le=5)

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> float:
        return parse_rate(value)

    @field_validator("dscp", mode="before")
    @classmethod
    def _dscp(cls, value: object) -> int:
        return parse_dscp(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with '/'")
        _no_blanks("path", value)
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value)
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str, info: ValidationInfo) -> str:
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get("base") or Path.cwd()
        loaded: dict[Path, str | None] = context.setdefault("loaded", {})
        path = Path(base, value)  # an absolute value stays itself
        if path not in loaded:
            loaded[path] = _ca_problem(path)
        problem = loaded[path]
        if problem is not None:
            raise ValueError(f"ca_file {value!r}: {problem}")
        return str(path)


def _no_blanks(what: str, value: str) -> None:
    if any(char.isspace() or not char.isprintable() for char in value):
        raise ValueError(f"{what} {value!r} has spaces or control characters: percent-encode "
                         "them (a space is %20)")


def check_url(value: str) -> str:
    """The scheme of an http(s) URL the HTTP probe can request; ValueError saying why not."""
    _no_blanks("url", value)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # a bad port or IPv6 literal
        raise ValueError(f"url {value!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"url {value!r} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"url {value!r}: user names and passwords are not supported")
    host = parts.hostname or ""
    if not is_host(host):
        raise ValueError(f"url {value!r} needs a host: an IP address or a DNS name (an "
                         "international name in its ASCII xn-- form)")
    if port == 0:
        raise ValueError(f"url {value!r}: bad port (a number 1-65535)")
    return scheme


def is_host(text: str) -> bool:
    """An IP literal or a DNS host name (ASCII; an IDN is written in its xn-- form)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return HOSTNAME.fullmatch(text) is not None
    return True


def _ca_problem(path: Path) -> str | None:
    """Why ``path`` is no CA bundle the TLS checks can load, or None if it is one."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only a regular file is
        # then read (a device such as /dev/zero would never end)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return f"no such file ({path})"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        mode = os.fstat(descriptor).st_mode
    finally:
        os.close(descriptor)
    if stat.S_ISDIR(mode):
        return f"{path} is a directory, not a PEM file"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"{path} holds no PEM CA certificate OpenSSL can load ({exc})"
    return None


def resolve_checks(
    loc: Loc,
    layers: Sequence[tuple[Loc, dict[str, CheckModel]]],
    interval: float,
    issue: Issue,
) -> tuple[CheckSpec, ...] | None:
    """Merge the check layers (profile default → named profile → site), later wins per key.

    ``layers`` pairs each layer's own location (for error lines) with its checks. Returns
    None after reporting when anything is wrong.
    """
    merged: dict[str, dict[str, Any]] = {}
    where: dict[str, Loc] = {}
    written: dict[str, set[str]] = {}
    ok = True
    for layer_loc, checks in layers:
        for name, check in checks.items():
            check_loc = (*layer_loc, "checks", name)
            if not CHECK_NAME.fullmatch(name):
                issue(check_loc, f"check name {name!r} must match [a-z][a-z0-9_-]*")
                ok = False
                continue
            values = check.model_dump(exclude_none=True, exclude_unset=True)
            if name not in merged and "type" not in values:
                issue(check_loc, f"check {name!r} needs a type (tcp, h323, http, https, sip, "
                                 "sips, stamp, mtu) — or a profile check of that name to override")
                ok = False
                continue
            merged.setdefault(name, {}).update(values)
            where[name] = check_loc
            written[name] = set(values)
    if not ok:
        return None
    specs: list[CheckSpec] = []
    for name, values in merged.items():
        if not values.get("enabled", True):
            continue
        kind = values["type"]
        wrong = sorted(set(values) - APPLIES[kind])
        if wrong:
            issue((*where[name], wrong[0]),
                  f"{', '.join(wrong)} does not apply to a {kind} check")
            ok = False
            continue
        if kind == "tcp" and "port" not in values:
            issue(where[name], "a tcp check needs a port")
            ok = False
            continue
        if "url" in values and check_url(values["url"]) != kind:
            issue((*where[name], "url"), f"url {values['url']!r} does not match the type of "
                                         f"the check ({kind}): the scheme decides the probe")
            ok = False
            continue
        if kind == "stamp":
            problem = _train_problem(values) or _thresholds_problem(values, written[name])
            if problem is not None:
                key, message = problem
                issue((*where[name], key) if key else where[name], message)
                ok = False
                continue
        if kind == "mtu" and not MTU_MIN_SIZE <= values.get("size", MTU_MIN_SIZE) \
                <= MTU_MAX_SIZE:
            issue((*where[name], "size"),
                  f"mtu check: size {values['size']} must be {MTU_MIN_SIZE}-{MTU_MAX_SIZE} "
                  "octets of ICMP payload (the packet is 28 more: 1472 fills a 1500 MTU)")
            ok = False
            continue
        spec = _build(name, kind, values)
        if in_rounds(spec) and spec.timeout >= interval:
            issue(where[name], f"timeout {spec.timeout:g} s is not shorter than the "
                               f"{interval:g} s interval")
            ok = False
            continue
        specs.append(spec)
    return tuple(specs) if ok else None


def _train_problem(values: dict[str, Any]) -> tuple[str | None, str] | None:
    """(the key at fault, why) when the train is not one the sender accepts."""
    try:
        # The host is the site's (checked elsewhere); the rest is what the sender will get.
        TrainSpec(host="site", **_train_fields(values))
    except ValueError as exc:
        message = str(exc)
        key = message.split(" ", 1)[0].rstrip(":")
        return (key if key in STAMP_KEYS else None), f"stamp train: {message}"
    return None


def _thresholds_problem(values: dict[str, Any],
                        written: set[str]) -> tuple[str | None, str] | None:
    """(the key at fault, why) when the merged thresholds are out of order; ``written``:
    the keys the last layer wrote, where a site's override is at fault rather than the
    profile's line (a site raising loss_good above the profile's loss_bad)."""
    try:
        _thresholds(values)
    except ValueError as exc:
        message = str(exc)  # "loss_good must not exceed loss_bad"
        pair = [word for word in message.split() if word in STAMP_THRESHOLD_KEYS]
        ours = [key for key in pair if key in written] or pair
        defaults = StampThresholds()
        shown = ", ".join(
            f"{key} = {values.get(key, getattr(defaults, key)):g}"
            + ("" if key in values else " (the default)") for key in pair)
        return ours[0], f"stamp thresholds: {message} ({shown})"
    return None


def _thresholds(values: dict[str, Any]) -> StampThresholds:
    return StampThresholds(**{key: float(values[key]) for key in STAMP_THRESHOLD_KEYS
                              if key in values})


def _build(name: str, kind: str, values: dict[str, Any]) -> CheckSpec:
    common: dict[str, Any] = {"name": name}
    for key in ("timeout", "required"):
        if key in values:
            common[key] = values[key]
    rounds = {"rounds": values["rounds"]} if "rounds" in values else {}
    if kind == "stamp":
        return StampSpec(**_train_fields(values), **rounds, **common,
                         thresholds=_thresholds(values))
    if kind == "mtu":
        size = {"size": values["size"]} if "size" in values else {}
        return MtuSpec(**size, **rounds, **common)
    if kind in ("tcp", "h323"):
        return TcpSpec(port=values.get("port", 1720), kind=kind, **common)
    if kind in ("http", "https"):
        extra: dict[str, Any] = {k: values[k] for k in ("port", "path", "url", "method",
                                                         "follow_redirects",
                                         "max_body_bytes", "verify_tls", "cert_expiry_warn",
                                         "ca_file")
                 if k in values}
        if "expect_status" in values:
            extra["expect_status"] = tuple(values["expect_status"])
        return HttpSpec(scheme=kind, **extra, **common)
    transport = "tls" if kind == "sips" else values.get("transport", "udp")
    extra = {k: values[k] for k in ("port", "verify_tls", "ca_file") if k in values}
    extra = dict(extra)
    if "accept" in values:
        extra["accept"] = tuple(values["accept"])
    return SipSpec(transport=transport, **extra, **common)

