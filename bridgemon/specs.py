"""Resolved, immutable probe and judgement settings of one site.

The configuration layer builds these (built-in defaults ← profile ← site overrides);
probes and readiness only read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridgemon.stamp.train import (
    DEFAULT_DSCP,
    DEFAULT_DURATION,
    DEFAULT_PORT,
    DEFAULT_RATE_BPS,
    DEFAULT_SIZE,
    DEFAULT_WAIT,
    ReflectorMode,
    StampThresholds,
)


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    count: int = 5
    spacing: float = 0.2
    timeout: float = 1.0
    size: int = 56

    @property
    def duration(self) -> float:
        """How long one burst can take: the last echo goes out, then waits its timeout."""
        return (self.count - 1) * self.spacing + self.timeout


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Video thresholds. Within every *_good: ready; past any *_bad: not ready."""

    rtt_good: float = 0.150
    rtt_bad: float = 0.300
    jitter_good: float = 0.030
    jitter_bad: float = 0.050
    loss_good: float = 0.01
    loss_bad: float = 0.05


# -- service checks (issue: SIP OPTIONS, H.323, TCP, HTTP(S)/TLS) ---------------------------
# Every check has a name (unique per site: the `check` label), a timeout covering the whole
# check (DNS included), and `required`: a failing required check makes the site not ready,
# an optional one degraded.


@dataclass(frozen=True, slots=True)
class TcpSpec:
    """Connect to ``port``; ``kind`` is "tcp" or "h323" (same probe, H.323 defaults to 1720)."""

    name: str
    port: int
    kind: str = "tcp"
    timeout: float = 3.0
    required: bool = True


@dataclass(frozen=True, slots=True)
class HttpSpec:
    """GET (or HEAD) ``scheme://<site address>:port/path``; ``url`` overrides all of that."""

    name: str
    scheme: str = "https"  # http | https
    port: int | None = None  # None: 80 / 443
    path: str = "/"
    url: str | None = None
    method: str = "GET"  # GET | HEAD
    expect_status: tuple[int, ...] = (200,)
    verify_tls: bool = True
    follow_redirects: bool = False
    max_body_bytes: int = 65536
    cert_expiry_warn: float = 14 * 86400.0  # seconds before expiry that make it degraded
    ca_file: str | None = None  # PEM CA bundle to trust instead of the system store
    timeout: float = 5.0
    required: bool = True


@dataclass(frozen=True, slots=True)
class SipSpec:
    """SIP OPTIONS to ``sip:<site address>:port`` over ``transport``."""

    name: str
    transport: str = "udp"  # udp | tcp | tls
    port: int | None = None  # None: 5060, or 5061 for tls
    accept: tuple[int, ...] = ()  # final codes that count as alive; () = any final response
    verify_tls: bool = False  # codecs rarely have certificates a client could verify
    ca_file: str | None = None  # PEM CA bundle to trust instead of the system store
    timeout: float = 4.0
    required: bool = True


@dataclass(frozen=True, slots=True)
class StampSpec:
    """A STAMP packet train (bridgemon.stamp) to a reflector at the site's address: can
    the line carry a video stream of ``rate_bps``? It costs that bandwidth for
    ``duration``, so test runs run it and the rounds only with ``rounds``. The loader has
    checked that the train is one ``stamp.TrainSpec`` accepts."""

    name: str
    port: int = DEFAULT_PORT
    rate_bps: float = DEFAULT_RATE_BPS
    size: int = DEFAULT_SIZE
    duration: float = DEFAULT_DURATION
    dscp: int = DEFAULT_DSCP
    reflector: ReflectorMode = "auto"
    wait: float = DEFAULT_WAIT
    rounds: bool = False
    required: bool = True
    thresholds: StampThresholds = field(default_factory=StampThresholds)

    @property
    def timeout(self) -> float:
        """The train, the answers' wait, and a name lookup (5 s: the sender's bound)."""
        return self.duration + self.wait + 5.0


#: The path MTU check's bounds, in octets of ICMP payload (bridgemon.stamp.pmtu's own, kept
#: here because the loader may not import the probes; a test holds the two equal): 1472
#: fills a 1500-octet Ethernet MTU, 65507 is the largest an IPv4 packet can carry.
MTU_DEFAULT_SIZE = 1472
MTU_MIN_SIZE = 57
MTU_MAX_SIZE = 65507
MTU_ECHO_TIMEOUT = 1.0
MTU_ATTEMPTS = 2
MTU_SEARCH_STEPS = 6


@dataclass(frozen=True, slots=True)
class MtuSpec:
    """Path MTU: do ``size`` octets of ICMP payload with DF set reach the site, and if not,
    does a router say "fragmentation needed" or are they lost silently? A few large
    echoes each time, so test runs run it and the rounds only with ``rounds``."""

    name: str
    size: int = MTU_DEFAULT_SIZE
    rounds: bool = False
    required: bool = True

    @property
    def timeout(self) -> float:
        """At most two tries at full size, two small, then the search, one echo timeout
        each; and a name lookup (5 s, as a train's)."""
        echoes = 2 * MTU_ATTEMPTS + MTU_SEARCH_STEPS
        return echoes * MTU_ECHO_TIMEOUT + 5.0


CheckSpec = TcpSpec | HttpSpec | SipSpec | StampSpec | MtuSpec


def in_rounds(check: CheckSpec) -> bool:
    """Whether the rounds run ``check``: packet trains and MTU checks only with
    ``rounds = true`` (they cost bandwidth or large packets); test runs run every check."""
    return not isinstance(check, StampSpec | MtuSpec) or check.rounds
