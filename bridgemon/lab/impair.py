"""Impairment rules of the lab: what to do to packets going toward a site.

Pure code, no I/O, shared by the forwarder (which applies the rules to every packet) and by
the client side (:class:`bridgemon.lab.Lab`, the CLI), which validates a rule before
sending it so a typo fails in the caller with a clear message.

* :class:`Impairment` – one rule: delay, jitter, loss ratio, down, drop filters, a rate
  limit each way and an MTU toward the site.
* :func:`parse_filter` – ``"tcp:1720"``, ``"udp:5060-5070"``, ``"tcp"``, ``"icmp"``.
* :class:`RuleTable` – the rules by IPv4 prefix; the most specific prefix wins.
* :class:`Shaper` – a token bucket with a bounded queue: a bottleneck link.
* :func:`decide` – the per-packet verdict (forward now, drop, or delay by N seconds);
  :func:`decide_return` the same for packets coming back from the site.
* :func:`frag_needed` and :func:`fragment` – what a router does with a packet larger
  than its next hop's MTU.
"""

from __future__ import annotations

import ipaddress
import random
import struct
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
DROP_RATE = "rate"  # the shaper's queue was full
DROP_MTU = "mtu"  # too big, DF set, black hole: dropped without a word
ICMP_MTU = "icmp_mtu"  # too big, DF set: "fragmentation needed" goes back to the sender
FRAGMENT = "fragment"  # too big, DF clear: split, as a router would

#: Rate limits at most 10 Gbit/s; queues at most 10 s of the rate.
MAX_RATE_BPS = 10e9
MAX_QUEUE_MS = 10_000.0
DEFAULT_QUEUE_MS = 100.0
MIN_MTU = 68  # RFC 791: every IPv4 host and router handles 68 octets


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
    """What to do to packets toward one address or prefix (host → lab direction), and
    the rate limit of packets coming back from it.

    Order of application toward the site: ``down`` drops everything; then ``drop``
    filters; then ``loss`` (independent Bernoulli drop per packet); then ``mtu`` (a packet
    larger than it is refused with ICMP "fragmentation needed" when DF is set, or dropped
    silently with ``mtu_blackhole``; without DF it is fragmented); then ``rate_bps``
    (a :class:`Shaper`: packets wait in a queue of ``queue_ms`` at that rate, and are
    dropped only when it is full); then ``delay_ms`` plus a uniform random extra in
    ``[-jitter_ms, +jitter_ms]`` (total clamped at ≥ 0, so packets may reorder).

    From the site back to the host only ``return_rate_bps`` applies (its own shaper,
    same queue length), so a site's uplink can be narrower than its downlink.
    Rates count whole IP packets; 0 means no limit.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    down: bool = False
    drop: tuple[PortFilter, ...] = ()
    rate_bps: float = 0.0
    return_rate_bps: float = 0.0
    queue_ms: float = DEFAULT_QUEUE_MS
    mtu: int = 0
    mtu_blackhole: bool = False

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
        for name in ("rate_bps", "return_rate_bps"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= MAX_RATE_BPS:
                raise ValueError(f"{name} must be 0 (no limit) to {MAX_RATE_BPS:g} bit/s, "
                                 f"got {value!r}")
            if 0 < value < 8_000:
                raise ValueError(f"{name} must be at least 8000 bit/s (or 0), got {value!r}")
        if not isinstance(self.queue_ms, int | float) or not 0 < self.queue_ms <= MAX_QUEUE_MS:
            raise ValueError(f"queue_ms must be more than 0 and at most {MAX_QUEUE_MS:g} ms, "
                             f"got {self.queue_ms!r}")
        if (isinstance(self.mtu, bool) or not isinstance(self.mtu, int)
                or not (self.mtu == 0 or MIN_MTU <= self.mtu <= 65535)):
            raise ValueError(f"mtu must be 0 (none) or {MIN_MTU}-65535, got {self.mtu!r}")
        if self.mtu_blackhole and not self.mtu:
            raise ValueError("mtu_blackhole needs an mtu")

    @classmethod
    def build(
        cls,
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        down: bool = False,
        drop: Iterable[str | PortFilter] = (),
        rate_bps: float = 0.0,
        return_rate_bps: float = 0.0,
        queue_ms: float = DEFAULT_QUEUE_MS,
        mtu: int = 0,
        mtu_blackhole: bool = False,
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
            rate_bps=float(rate_bps),
            return_rate_bps=float(return_rate_bps),
            queue_ms=float(queue_ms),
            mtu=mtu,
            mtu_blackhole=bool(mtu_blackhole),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Impairment:
        """From the JSON form used on the control channel; unknown keys are an error."""
        known = {"delay_ms", "jitter_ms", "loss", "down", "drop", "rate_bps",
                 "return_rate_bps", "queue_ms", "mtu", "mtu_blackhole"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown impairment field(s): {', '.join(sorted(unknown))}")
        drop = data.get("drop") or ()
        if isinstance(drop, str):
            drop = [drop]
        mtu = data.get("mtu", 0) or 0
        if isinstance(mtu, float) and mtu.is_integer():
            mtu = int(mtu)
        return cls.build(
            delay_ms=data.get("delay_ms", 0.0) or 0.0,
            jitter_ms=data.get("jitter_ms", 0.0) or 0.0,
            loss=data.get("loss", 0.0) or 0.0,
            down=bool(data.get("down", False)),
            drop=drop,
            rate_bps=data.get("rate_bps", 0.0) or 0.0,
            return_rate_bps=data.get("return_rate_bps", 0.0) or 0.0,
            queue_ms=data.get("queue_ms", DEFAULT_QUEUE_MS) or DEFAULT_QUEUE_MS,
            mtu=mtu,
            mtu_blackhole=bool(data.get("mtu_blackhole", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "loss": self.loss,
            "down": self.down,
            "drop": [str(f) for f in self.drop],
            "rate_bps": self.rate_bps,
            "return_rate_bps": self.return_rate_bps,
            "queue_ms": self.queue_ms,
            "mtu": self.mtu,
            "mtu_blackhole": self.mtu_blackhole,
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
        parts.extend(describe_shaping(self.to_dict()))
        return ", ".join(parts) or "none"


def _rate_text(bps: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if bps >= size:
            return f"{bps / size:g}{unit}bit/s"
    return f"{bps:g}bit/s"


def describe_shaping(rule: Mapping[str, Any]) -> list[str]:
    """``rate 1Mbit/s (queue 100ms)``, ``return rate …``, ``mtu 1400 (black hole)``."""
    parts: list[str] = []
    queue = f" (queue {rule.get('queue_ms', DEFAULT_QUEUE_MS):g}ms)"
    if rule.get("rate_bps"):
        parts.append(f"rate {_rate_text(rule['rate_bps'])}{queue}")
    if rule.get("return_rate_bps"):
        parts.append(f"return rate {_rate_text(rule['return_rate_bps'])}{queue}")
    if rule.get("mtu"):
        parts.append(f"mtu {rule['mtu']}" + (" (black hole)" if rule.get("mtu_blackhole")
                                             else ""))
    return parts


class Shaper:
    """A bottleneck: a token bucket of ``rate_bps`` whose backlog may reach ``queue_ms``.

    A packet that finds tokens leaves at once; one that does not waits for them behind
    the packets already waiting (the backlog is a token debt, so order is kept), and is
    dropped only when the backlog would exceed the queue — delay first, then loss, as a
    real link with a buffer behaves. The bucket holds a burst of two full-size frames or
    5 ms of the rate, whichever is larger.
    """

    __slots__ = ("burst", "limit", "rate", "stamp", "tokens")

    def __init__(self, rate_bps: float, queue_ms: float) -> None:
        self.rate = rate_bps / 8.0  # bytes per second
        self.burst = max(3028.0, self.rate * 0.005)
        self.limit = max(1514.0, self.rate * queue_ms / 1000.0)  # bytes of backlog
        self.tokens = self.burst
        self.stamp: float | None = None

    def admit(self, size: int, now: float) -> float | None:
        """Seconds the packet waits before it leaves, or None when the queue is full."""
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        after = self.tokens - size
        if after >= 0.0:
            self.tokens = after
            return 0.0
        if -after > self.limit:
            return None
        self.tokens = after
        return -after / self.rate


@dataclass(slots=True)
class Rule:
    """An impairment installed for a prefix, with its own counters."""

    net: ipaddress.IPv4Network
    imp: Impairment
    # Precomputed for the per-packet hot path.
    delay_s: float = 0.0
    jitter_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    shaper: Shaper | None = None
    return_shaper: Shaper | None = None

    def __post_init__(self) -> None:
        self.delay_s = self.imp.delay_ms / 1000.0
        self.jitter_s = self.imp.jitter_ms / 1000.0
        imp = self.imp
        self.shaper = Shaper(imp.rate_bps, imp.queue_ms) if imp.rate_bps else None
        self.return_shaper = (
            Shaper(imp.return_rate_bps, imp.queue_ms) if imp.return_rate_bps else None
        )
        self.counters = {
            "matched": 0,
            "forwarded": 0,
            "delayed": 0,
            "dropped_down": 0,
            "dropped_filter": 0,
            "dropped_loss": 0,
            "shaped": 0,
            "dropped_rate": 0,
            "dropped_mtu": 0,
            "icmp_mtu": 0,
            "fragmented": 0,
            "return_matched": 0,
            "return_shaped": 0,
            "return_dropped_rate": 0,
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

    @property
    def shapes_return(self) -> bool:
        """Whether any rule limits the rate of packets coming back from the lab."""
        return any(rule.imp.return_rate_bps for rule in self._rules.values())

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


def decide(
    rule: Rule, pkt: bytes, rng: random.Random, now: float = 0.0
) -> tuple[str, float]:
    """Verdict for one host → lab IPv4 packet covered by ``rule``.

    Returns ``(kind, delay_seconds)``; the delay is meaningful only for ``DELAY``.
    ``now`` (monotonic seconds) drives the rate limit. ``ICMP_MTU``, ``DROP_MTU`` and
    ``FRAGMENT`` leave the rest to the caller: the forwarder answers, drops, or splits
    the packet and passes each fragment to :func:`after_mtu`.
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
    if imp.mtu and len(pkt) > imp.mtu:
        if pkt[6] & 0x40:  # DF
            if imp.mtu_blackhole:
                c["dropped_mtu"] += 1
                return DROP_MTU, 0.0
            c["icmp_mtu"] += 1
            return ICMP_MTU, 0.0
        c["fragmented"] += 1
        return FRAGMENT, 0.0
    return after_mtu(rule, len(pkt), rng, now)


def after_mtu(rule: Rule, size: int, rng: random.Random, now: float) -> tuple[str, float]:
    """The rate limit and delay of a packet (or fragment) that fits the MTU."""
    c = rule.counters
    wait = 0.0
    if rule.shaper is not None:
        admitted = rule.shaper.admit(size, now)
        if admitted is None:
            c["dropped_rate"] += 1
            return DROP_RATE, 0.0
        if admitted > 0.0:
            c["shaped"] += 1
            wait = admitted
    delay = rule.delay_s
    if rule.jitter_s:
        delay += rng.uniform(-rule.jitter_s, rule.jitter_s)
        if delay < 0.0:
            delay = 0.0
    delay += wait  # jitter shortens the path, never the bottleneck's queue
    if delay > 0.0:
        c["delayed"] += 1
        return DELAY, delay
    c["forwarded"] += 1
    return FORWARD, 0.0


def decide_return(rule: Rule, size: int, now: float) -> tuple[str, float]:
    """Verdict for one lab → host packet from an address covered by ``rule``: only the
    return rate limit applies (FORWARD, DELAY by the queue's wait, or DROP_RATE)."""
    c = rule.counters
    c["return_matched"] += 1
    if rule.return_shaper is None:
        return FORWARD, 0.0
    wait = rule.return_shaper.admit(size, now)
    if wait is None:
        c["return_dropped_rate"] += 1
        return DROP_RATE, 0.0
    if wait > 0.0:
        c["return_shaped"] += 1
        return DELAY, wait
    return FORWARD, 0.0


# ---------------------------------------------------------------------------- MTU


def ip_checksum(header: bytes) -> int:
    """The Internet checksum (RFC 1071) of an IPv4 header whose checksum field is zero."""
    if len(header) % 2:
        header += b"\0"
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ttl: int = 64,
                 ident: int = 0, flags_frag: int = 0, tos: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + payload_len, ident, flags_frag,
                         ttl, proto, 0, src, dst)
    return header[:10] + struct.pack("!H", ip_checksum(header)) + header[12:]


def frag_needed(pkt: bytes, mtu: int, router: bytes) -> bytes:
    """The ICMP "fragmentation needed" (type 3, code 4, RFC 1191) a router at address
    ``router`` sends back for ``pkt``: next-hop MTU, the original header and the first 8
    octets of its payload (RFC 792), all a sender's kernel needs to match its socket."""
    ihl = (pkt[0] & 0x0F) * 4
    quoted = pkt[: ihl + 8]
    body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quoted
    body = body[:2] + struct.pack("!H", ip_checksum(body)) + body[4:]
    return _ipv4_header(router, pkt[12:16], 1, len(body)) + body


def fragment(pkt: bytes, mtu: int) -> list[bytes]:
    """``pkt`` split into fragments of at most ``mtu`` octets (RFC 791 §3.2), as a router
    forwards a packet without DF. Options are copied to every fragment (simplest, valid)."""
    ihl = (pkt[0] & 0x0F) * 4
    header, payload = pkt[:ihl], pkt[ihl:]
    flags_frag = struct.unpack_from("!H", pkt, 6)[0]
    more = flags_frag & 0x2000
    offset = (flags_frag & 0x1FFF) * 8
    step = (mtu - ihl) // 8 * 8
    if step <= 0:
        return []
    out: list[bytes] = []
    for start in range(0, len(payload), step):
        part = payload[start : start + step]
        last = start + step >= len(payload)
        field = ((offset + start) // 8) | (0 if last and not more else 0x2000)
        head = bytearray(header)
        struct.pack_into("!HHH", head, 2, ihl + len(part), struct.unpack_from("!H", pkt, 4)[0],
                         field)
        head[10:12] = b"\0\0"
        struct.pack_into("!H", head, 10, ip_checksum(bytes(head)))
        out.append(bytes(head) + part)
    return out
