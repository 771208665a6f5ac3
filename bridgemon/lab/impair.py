"""Impairment rules of the lab: what to do to packets going toward a site.

Pure code, no I/O, shared by the forwarder (which applies the rules to every packet) and by
the client side (:class:`bridgemon.lab.Lab`, the CLI), which validates a rule before
sending it so a typo fails in the caller with a clear message.

* :class:`Impairment` – one rule: delay, jitter, loss ratio, down, drop filters.
* :func:`parse_filter` – ``"tcp:1720"``, ``"udp:5060-5070"``, ``"tcp"``, ``"icmp"``.
* :class:`RuleTable` – the rules by IPv4 prefix; the most specific prefix wins.
* :func:`decide` – the per-packet verdict (forward now, drop, or delay by N seconds).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: IP protocol numbers of the protocols a drop filter can name.
PROTOCOLS: dict[str, int] = {"icmp": 1, "tcp": 6, "udp": 17}
_PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}

# Verdict kinds returned by decide(). Plain strings keep the hot path cheap.
FORWARD = "forward"
DELAY = "delay"
DROP_DOWN = "down"
DROP_FILTER = "filter"
DROP_LOSS = "loss"


@dataclass(frozen=True, slots=True)
class PortFilter:
    """Drop packets of ``proto`` whose destination port is in ``[lo, hi]``.

    ``lo``/``hi`` are ``None`` for a protocol-wide filter (``"tcp"``, ``"icmp"``).
    """

    proto: int
    lo: int | None = None
    hi: int | None = None

    def __str__(self) -> str:
        name = _PROTO_NAMES.get(self.proto, str(self.proto))
        if self.lo is None:
            return name
        if self.lo == self.hi:
            return f"{name}:{self.lo}"
        return f"{name}:{self.lo}-{self.hi}"


def parse_filter(text: str) -> PortFilter:
    """Parse ``"tcp:1720"``, ``"udp:5060-5070"``, ``"tcp"``, ``"udp"`` or ``"icmp"``.

    Raises ValueError with a message that names the bad part.
    """
    raw = text.strip().lower()
    proto_s, sep, ports = raw.partition(":")
    if proto_s not in PROTOCOLS:
        raise ValueError(f"drop filter {text!r}: protocol must be one of {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[proto_s]
    if not sep:
        return PortFilter(proto)
    if proto_s == "icmp":
        raise ValueError(f"drop filter {text!r}: icmp has no ports")
    lo_s, dash, hi_s = ports.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
    except ValueError:
        raise ValueError(
            f"drop filter {text!r}: port must be a number or a range like 5060-5070"
        ) from None
    if not (1 <= lo <= hi <= 65535):
        raise ValueError(f"drop filter {text!r}: ports must be 1..65535, low ≤ high")
    return PortFilter(proto, lo, hi)


def parse_target(target: str) -> ipaddress.IPv4Network:
    """An address (``198.18.1.2``) or prefix (``198.18.2.0/24``) as an IPv4 network.

    Host bits of a prefix are ignored (``198.18.2.7/24`` means ``198.18.2.0/24``), because
    that is what a person typing it means.
    """
    try:
        net = ipaddress.ip_network(target.strip(), strict=False)
    except ValueError:
        raise ValueError(f"target {target!r} is not an IPv4 address or prefix") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"target {target!r}: the lab is IPv4 only")
    return net


@dataclass(frozen=True, slots=True)
class Impairment:
    """What to do to packets toward one address or prefix (host → lab direction only).

    Order of application: ``down`` drops everything; then ``drop`` filters; then ``loss``
    (independent Bernoulli drop per packet); then ``delay_ms`` plus a uniform random
    extra in ``[-jitter_ms, +jitter_ms]`` (total clamped at ≥ 0, so packets may reorder).
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    down: bool = False
    drop: tuple[PortFilter, ...] = ()

    def __post_init__(self) -> None:
        # Validate here so a bad rule is refused by the client and by the forwarder alike.
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value != value or value < 0:
                raise ValueError(f"{name} must be a number ≥ 0, got {value!r}")
            if value > 60_000:
                raise ValueError(f"{name} must be ≤ 60000 ms, got {value!r}")
        if not isinstance(self.loss, int | float) or not (0.0 <= self.loss <= 1.0):
            raise ValueError(f"loss must be a ratio in [0, 1], got {self.loss!r}")

    @classmethod
    def build(
        cls,
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        down: bool = False,
        drop: Iterable[str | PortFilter] = (),
    ) -> Impairment:
        """Construct from user-facing values (filters as strings)."""
        if isinstance(drop, str):  # a lone "tcp:1720" would otherwise iterate characters
            drop = [drop]
        filters = tuple(f if isinstance(f, PortFilter) else parse_filter(f) for f in drop)
        return cls(
            delay_ms=float(delay_ms),
            jitter_ms=float(jitter_ms),
            loss=float(loss),
            down=bool(down),
            drop=filters,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Impairment:
        """From the JSON form used on the control channel; unknown keys are an error."""
        known = {"delay_ms", "jitter_ms", "loss", "down", "drop"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown impairment field(s): {', '.join(sorted(unknown))}")
        drop = data.get("drop") or ()
        if isinstance(drop, str):
            drop = [drop]
        return cls.build(
            delay_ms=data.get("delay_ms", 0.0) or 0.0,
            jitter_ms=data.get("jitter_ms", 0.0) or 0.0,
            loss=data.get("loss", 0.0) or 0.0,
            down=bool(data.get("down", False)),
            drop=drop,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "loss": self.loss,
            "down": self.down,
            "drop": [str(f) for f in self.drop],
        }

    def describe(self) -> str:
        """Short human text, e.g. ``delay 40ms ±5ms, loss 10%, drop tcp:1720``."""
        parts: list[str] = []
        if self.down:
            parts.append("down")
        if self.delay_ms or self.jitter_ms:
            jitter = f" ±{self.jitter_ms:g}ms" if self.jitter_ms else ""
            parts.append(f"delay {self.delay_ms:g}ms{jitter}")
        if self.loss:
            parts.append(f"loss {self.loss * 100:g}%")
        if self.drop:
            parts.append("drop " + ",".join(str(f) for f in self.drop))
        return ", ".join(parts) or "none"


@dataclass(slots=True)
class Rule:
    """An impairment installed for a prefix, with its own counters."""

    net: ipaddress.IPv4Network
    imp: Impairment
    # Precomputed for the per-packet hot path.
    delay_s: float = 0.0
    jitter_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.delay_s = self.imp.delay_ms / 1000.0
        self.jitter_s = self.imp.jitter_ms / 1000.0
        self.counters = {
            "matched": 0,
            "forwarded": 0,
            "delayed": 0,
            "dropped_down": 0,
            "dropped_filter": 0,
            "dropped_loss": 0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"target": str(self.net), **self.imp.to_dict(), "counters": dict(self.counters)}


class RuleTable:
    """Rules by prefix with longest-prefix match and a per-destination cache.

    The cache matters: the forwarder looks up every packet, and a dict hit on the four
    destination bytes is far cheaper than walking prefix lengths.
    """

    _CACHE_MAX = 65536

    def __init__(self) -> None:
        self._rules: dict[ipaddress.IPv4Network, Rule] = {}
        # prefix length -> {network int: rule}, lengths probed longest first
        self._by_len: dict[int, dict[int, Rule]] = {}
        self._lengths: list[int] = []
        self._cache: dict[bytes, Rule | None] = {}

    def __len__(self) -> int:
        return len(self._rules)

    def rules(self) -> list[Rule]:
        return sorted(self._rules.values(), key=lambda r: (r.net.network_address, r.net.prefixlen))

    def set(self, net: ipaddress.IPv4Network, imp: Impairment) -> Rule:
        """Install (or replace) the rule for exactly ``net``; counters restart."""
        rule = Rule(net, imp)
        self._rules[net] = rule
        self._rebuild()
        return rule

    def clear(self, net: ipaddress.IPv4Network | None = None) -> int:
        """Remove the rule for exactly ``net`` (or all rules); returns how many went."""
        if net is None:
            n = len(self._rules)
            self._rules.clear()
        else:
            n = 1 if self._rules.pop(net, None) is not None else 0
        self._rebuild()
        return n

    def _rebuild(self) -> None:
        by_len: dict[int, dict[int, Rule]] = {}
        for net, rule in self._rules.items():
            by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = rule
        self._by_len = by_len
        self._lengths = sorted(by_len, reverse=True)
        self._cache = {}

    def lookup(self, dst: bytes) -> Rule | None:
        """The most specific rule covering the 4-byte IPv4 destination ``dst``, if any."""
        try:
            return self._cache[dst]
        except KeyError:
            pass
        addr = int.from_bytes(dst, "big")
        found: Rule | None = None
        for length in self._lengths:
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            found = self._by_len[length].get(addr & mask)
            if found is not None:
                break
        if len(self._cache) >= self._CACHE_MAX:
            self._cache = {}
        self._cache[dst] = found
        return found


def filter_matches(filters: tuple[PortFilter, ...], pkt: bytes) -> bool:
    """Whether an IPv4 packet matches any drop filter (destination port for tcp/udp).

    A non-first fragment carries no ports: only protocol-wide filters can match it. Its
    first fragment is dropped by a port filter anyway, so the datagram never reassembles.
    """
    proto = pkt[9]
    port = -1
    if proto in (6, 17):
        ihl = (pkt[0] & 0x0F) * 4
        first_fragment = ((pkt[6] & 0x1F) << 8 | pkt[7]) == 0
        if first_fragment and len(pkt) >= ihl + 4:
            port = pkt[ihl + 2] << 8 | pkt[ihl + 3]
    for f in filters:
        if f.proto != proto:
            continue
        if f.lo is None:
            return True
        if f.hi is not None and f.lo <= port <= f.hi:
            return True
    return False


def decide(rule: Rule, pkt: bytes, rng: random.Random) -> tuple[str, float]:
    """Verdict for one host → lab IPv4 packet covered by ``rule``.

    Returns ``(kind, delay_seconds)``; the delay is meaningful only for ``DELAY``.
    Counters of the rule are updated here so the forwarder's hot path stays short.
    """
    c = rule.counters
    c["matched"] += 1
    imp = rule.imp
    if imp.down:
        c["dropped_down"] += 1
        return DROP_DOWN, 0.0
    if imp.drop and filter_matches(imp.drop, pkt):
        c["dropped_filter"] += 1
        return DROP_FILTER, 0.0
    if imp.loss and rng.random() < imp.loss:
        c["dropped_loss"] += 1
        return DROP_LOSS, 0.0
    delay = rule.delay_s
    if rule.jitter_s:
        delay += rng.uniform(-rule.jitter_s, rule.jitter_s)
        if delay < 0.0:
            delay = 0.0
    if delay > 0.0:
        c["delayed"] += 1
        return DELAY, delay
    c["forwarded"] += 1
    return FORWARD, 0.0
