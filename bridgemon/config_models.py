"""The inventory file's shape: pydantic models of every section, and validating them.

Shapes are pydantic's: types, unknown keys, ranges, and what one value alone can tell (an
id's characters, an address, a label name, a listen address). Relations between entries
(levels, profiles, parents) are config_inventory.py's, after this.

``validate_shapes`` validates section by section and site by site, so that one bad value
costs only its own entry: the rest is still checked for relations, and a file with ten
mistakes is told all ten at once.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridgemon.config_checks import HOSTNAME, CheckModel, is_host
from bridgemon.config_issues import Issue
from bridgemon.config_source import Loc
from bridgemon.durations import Duration
from bridgemon.events import EventModel
from bridgemon.shards import parse_shard
from bridgemon.specs import MTU_DEFAULT_SIZE, MTU_MAX_SIZE, MTU_MIN_SIZE

DEFAULT_LISTEN = "127.0.0.1:9470"
# fullmatch, never match with "$": "$" also matches before a final newline.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL = re.compile(r"[a-z_][a-z0-9_]*")
RESERVED_LABELS = frozenset(
    {"site", "name", "level", "parent", "address", "contact", "phone", "profile", "instance", "job",
     "vantage"}
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


class VantageModel(_Strict):
    """Where this daemon looks from (docs/monitoring.md, "Vantage points")."""

    name: str | None = None  # None: the host name (config.host_vantage)
    anchors: list[str] = Field(default=[], max_length=16)
    gateway: bool = False  # probe the default gateway (/proc/net/route) as an anchor too
    isolated_share: float | None = Field(default=None, gt=0, le=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else check_vantage_name(value)

    @field_validator("anchors")
    @classmethod
    def _anchors(cls, value: list[str]) -> list[str]:
        return [check_address(anchor) for anchor in value]


class MonitorModel(_Strict):
    listen: str = DEFAULT_LISTEN
    interval: Duration = Field(default=30.0, ge=1, le=86400)
    window: int = Field(default=5, ge=1, le=1000)
    spread: float = Field(default=0.8, gt=0, le=1)
    max_concurrency: int = Field(default=4000, ge=1, le=1_000_000)
    icmp_mode: Literal["auto", "raw", "dgram"] = "auto"
    resolve_timeout: Duration = Field(default=2.0, gt=0, le=60)
    check_sockets: int = Field(default=512, ge=1, le=65536)
    state_dir: str | None = Field(default=None, min_length=1)  # resolved by config._state_dir
    event_window: Duration = Field(default=7 * 86400.0, gt=0)
    shard: str = "1/1"
    vantage: VantageModel = VantageModel()

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        parse_shard(value)
        return value

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
    # A path MTU check (ICMP payload octets, Don't Fragment) for every tested site whose
    # profile has none of its own; 0 turns it off. Not required: a failing one makes the
    # site degraded (a profile's own mtu check decides for itself).
    path_mtu: int = Field(default=MTU_DEFAULT_SIZE, ge=0, le=MTU_MAX_SIZE)

    @field_validator("path_mtu")
    @classmethod
    def _path_mtu(cls, value: int) -> int:
        if 0 < value < MTU_MIN_SIZE:
            raise ValueError(f"path_mtu must be 0 (off) or {MTU_MIN_SIZE}-{MTU_MAX_SIZE} "
                             "ICMP payload octets (1472 fills a 1500-octet MTU)")
        return value


class ApiModel(_Strict):
    """The mutating API needs a bearer token; without one configured it is refused."""

    token: str | None = Field(default=None, min_length=16)
    token_env: str = "BRIDGEMON_API_TOKEN"


ARGON2ID_PREFIX = "$argon2id$"
# The PHC string argon2-cffi writes: version, costs, then the salt and hash in base64.
_ARGON2ID = re.compile(r"\$argon2id\$v=19\$m=\d{1,10},t=\d{1,10},p=\d{1,3}"
                       r"\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}")
MIN_TOKEN = 16


def check_password_hash(value: str) -> str:
    """An argon2id hash (what ``bridgemon passwd`` prints); ValueError otherwise. The
    message never quotes the value: a password pasted here by mistake must not reach a
    terminal or a log."""
    from argon2 import extract_parameters
    from argon2.exceptions import InvalidHashError

    if value.startswith(("$2a$", "$2b$", "$2y$")):
        kind = "a bcrypt hash"
    elif value.startswith(("$argon2i$", "$argon2d$")):
        kind = "an argon2i/argon2d hash"
    elif not value.startswith(ARGON2ID_PREFIX):
        kind = "not a password hash (a password written in clear?)"
    else:
        try:
            extract_parameters(value)
            if _ARGON2ID.fullmatch(value):
                return value
            kind = "a damaged argon2id hash"
        except (InvalidHashError, ValueError):
            kind = "a damaged argon2id hash"
    raise ValueError(f"password_hash is {kind}: give the argon2id hash that "
                     "`bridgemon passwd NAME` prints (\"$argon2id$...\")")


def user_name(value: str) -> str:
    """A sign-in name as typed on a phone: NFC (a composed "ễ" and a decomposed one are
    the same name), no spaces or control characters, at most 64 characters."""
    text = unicodedata.normalize("NFC", value)
    if not 1 <= len(text) <= 64 or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError(f"bad user name {value!r}: 1 to 64 characters, no spaces or "
                         "control characters")
    return text


class WebUserModel(_Strict):
    name: str
    role: Literal["viewer", "operator"]
    password_hash: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return user_name(value)

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        return check_password_hash(value)


class WebModel(_Strict):
    """Who may see the pages and how they are served (see docs/web-access.md). Relations
    between the keys (TLS files that load, a LAN address with users) are config.py's."""

    listen: str | None = None  # wins over [monitor] listen, which is kept for old files
    tls_cert: str | None = Field(default=None, min_length=1)
    tls_key: str | None = Field(default=None, min_length=1)
    users: list[WebUserModel] = []
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    idle_timeout: Duration = Field(default=3600.0, ge=1, le=7 * 86400)
    trusted_proxies: list[str] = []
    metrics_token: str | None = Field(default=None, min_length=MIN_TOKEN)
    metrics_token_env: str = "BRIDGEMON_METRICS_TOKEN"
    allow_plain_http: bool = False

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an address or a "
                                 "network such as 10.0.0.5 or 10.0.0.0/24") from None
        return value


class ConfigModel(_Strict):
    """Every section but ``[[sites]]``: validate_shapes takes those one at a time."""

    monitor: MonitorModel = MonitorModel()
    web: WebModel = WebModel()
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


def _check_id(value: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(
            f"bad id {value!r}: use letters, digits, '.', '_' or '-' (at most 64, no spaces)"
        )
    return value


def check_vantage_name(value: str) -> str:
    """A vantage name: any Prometheus label value is UTF-8, but this one is shown on
    dashboards and in alerts, so it must be printable, trimmed and short."""
    if not value or value != value.strip():
        raise ValueError(f"vantage name {value!r} must be non-empty, without spaces around it")
    if len(value) > 64:
        raise ValueError(f"vantage name {value!r} is longer than 64 characters")
    if not value.isprintable() or '"' in value or "\\" in value:
        raise ValueError(f"vantage name {value!r} must be printable, without quotes or "
                         "backslashes")
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


class Shapes(NamedTuple):
    model: ConfigModel  # every valid section
    sites: list[SiteModel | None]  # one per [[sites]] entry, None where it is invalid
    written_ids: set[str]  # every site id the file writes, in a valid entry or not


def validate_shapes(raw: dict[str, Any], issue: Issue, base: Path) -> Shapes:
    """Every section and every site validated alone, each problem reported where it is.

    ``sites`` keeps one entry per ``[[sites]]`` (None for an invalid one) so that indexes
    stay those of the file's lines; ``written_ids`` lets a site whose parent is invalid
    not also be told its parent is unknown. ``base`` (the config file's directory) is
    where relative file names (ca_file) start."""
    context = {"base": base, "loaded": {}}

    def report(exc: ValidationError, prefix: Loc) -> None:
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
        return Shapes(model, [], set())
    sites: list[SiteModel | None] = []
    written_ids: set[str] = set()
    for i, site_raw in enumerate(sites_raw):
        if isinstance(site_raw, dict) and isinstance(site_raw.get("id"), str):
            written_ids.add(site_raw["id"])
        try:
            sites.append(SiteModel.model_validate(site_raw, context=context))
        except ValidationError as exc:
            report(exc, ("sites", i))
            sites.append(None)
    return Shapes(model, sites, written_ids)


def _pydantic_message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/inventory.md)"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


