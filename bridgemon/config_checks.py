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
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bridgemon.durations import parse_duration
from bridgemon.specs import CheckSpec, HttpSpec, SipSpec, TcpSpec

Duration = Annotated[float, BeforeValidator(parse_duration)]
CheckType = Literal["tcp", "h323", "http", "https", "sip", "sips"]
CHECK_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

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
}


class CheckModel(BaseModel):
    """One check as written; every key optional so a site can override a few."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: CheckType | None = None
    enabled: bool = True
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: Duration | None = Field(default=None, gt=0, le=300)
    required: bool | None = None
    transport: Literal["udp", "tcp", "tls"] | None = None
    accept: list[Annotated[int, Field(ge=200, le=699)]] | None = None
    verify_tls: bool | None = None
    path: str | None = None
    url: str | None = None
    method: Literal["GET", "HEAD"] | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    follow_redirects: bool | None = None
    max_body_bytes: int | None = Field(default=None, ge=0, le=16 * 1024 * 1024)
    cert_expiry_warn: Duration | None = Field(default=None, ge=0)
    ca_file: str | None = None  # a PEM bundle to trust instead of the system's (an internal CA)


Issue = Callable[[tuple[str | int, ...], str], None]


def resolve_checks(
    loc: tuple[str | int, ...],
    layers: Sequence[tuple[tuple[str | int, ...], dict[str, CheckModel]]],
    interval: float,
    issue: Issue,
) -> tuple[CheckSpec, ...] | None:
    """Merge the check layers (profile default → named profile → site), later wins per key.

    ``layers`` pairs each layer's own location (for error lines) with its checks. Returns
    None after reporting when anything is wrong.
    """
    merged: dict[str, dict[str, Any]] = {}
    where: dict[str, tuple[str | int, ...]] = {}
    ok = True
    for layer_loc, checks in layers:
        for name, check in checks.items():
            check_loc = (*layer_loc, "checks", name)
            if not CHECK_NAME.match(name):
                issue(check_loc, f"check name {name!r} must match [a-z][a-z0-9_-]*")
                ok = False
                continue
            values = check.model_dump(exclude_none=True, exclude_unset=True)
            if name not in merged and "type" not in values:
                issue(check_loc, f"check {name!r} needs a type (tcp, h323, http, https, sip, "
                                 "sips) — or a profile check of that name to override")
                ok = False
                continue
            merged.setdefault(name, {}).update(values)
            where[name] = check_loc
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
        spec = _build(name, kind, values)
        if spec.timeout >= interval:
            issue(where[name], f"timeout {spec.timeout:g} s is not shorter than the "
                               f"{interval:g} s interval")
            ok = False
            continue
        specs.append(spec)
    return tuple(specs) if ok else None


def _build(name: str, kind: str, values: dict[str, Any]) -> CheckSpec:
    common: dict[str, Any] = {"name": name}
    for key in ("timeout", "required"):
        if key in values:
            common[key] = values[key]
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

