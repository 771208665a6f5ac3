"""The STAMP Session-Reflector (RFC 8762 §4.3): stateful, bounded, answering only whom
it is told to. Run it from Python (``await serve(...)``, or :class:`Reflector`) or as
``python -m bridgemon.stamp.reflector --listen 0.0.0.0:862 --allow 10.0.0.0/8``.

What keeps it from being turned against anyone:

* **never more bytes out than in**: an answer has exactly the request's length (RFC 8762
  symmetric size); a request too short to be answered that way (under 41 octets) is
  dropped and counted, not answered with a longer packet;
* **rate limits**: a token bucket for the whole reflector in packets and bits per
  second, and one per session in packets per second; over them, requests are dropped;
* **bounded state**: at most ``max_sessions`` sessions (``max_sessions_per_source`` per
  source address), idle ones expire; a full table refuses new sessions, it never evicts
  a live one;
* **sources**: with ``allow`` given, only those networks are answered; requests from a
  privileged source port (below 1024) are never answered, which breaks the reflector ↔
  reflector loops (port 862 to port 862) and echo/chargen ping-pong a spoofed source
  could start;
* **garbage**: truncated and oversized datagrams are dropped and counted.

Stateful (the default): each session — the 4-tuple of addresses and ports — gets its
own sequence numbers, counting the requests received, so the sender can tell downlink
from uplink loss. Stateless (``stateful=False``) copies the sender's number.

The answer leaves from the address the request was sent to (IP_PKTINFO), so a reflector
bound to 0.0.0.0 on a multi-homed host answers from the right address; it carries the
request's DSCP (so the answer tests the same class of service on the way back), the
TTL the request arrived with (Ses-Sender TTL) and the kernel's receive time as T2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bridgemon import exits
from bridgemon.stamp import sockopts
from bridgemon.stamp.clock import SHARED as CLOCK
from bridgemon.stamp.packets import MIN_REFLECTABLE, REFLECTOR_HEADER, ntp_from_ns
from bridgemon.stamp.train import DEFAULT_PORT
from bridgemon.stamp.units import format_rate, parse_rate

log = logging.getLogger("bridgemon.stamp.reflector")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SENDER = struct.Struct("!IQHH")
_REFLECTED = struct.Struct("!IQHHQIQHHB")
_RECV_BATCH = 64
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag arithmetic is slow per packet
_ANCILLARY = 512
_SWEEP_S = 5.0
_TOKEN = struct.Struct("@i")


@dataclass(frozen=True, slots=True)
class ReflectorLimits:
    """Bounds of one reflector. Rates count requests (answers are never larger)."""

    max_sessions: int = 256
    max_sessions_per_source: int = 16
    max_pps: float = 20_000.0
    max_bps: float = 100_000_000.0
    session_pps: float = 5_000.0
    session_idle: float = 60.0
    max_packet: int = 9000  # UDP payload; larger requests are dropped as oversized
    min_source_port: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_sessions", "max_sessions_per_source", "max_packet"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} {value!r}: must be a whole number ≥ 1")
        for name in ("max_pps", "max_bps", "session_pps", "session_idle"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or value != value:
                raise ValueError(f"{name} {value!r}: must be a number > 0")
        if not isinstance(self.min_source_port, int) or not 0 <= self.min_source_port <= 65535:
            raise ValueError(f"min_source_port {self.min_source_port!r}: must be 0-65535")
        if self.max_packet < MIN_REFLECTABLE:
            raise ValueError(f"max_packet {self.max_packet}: must be ≥ {MIN_REFLECTABLE}")


class _Bucket:
    """Token bucket: ``rate`` per second, bursts of ``burst``."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, amount: float, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True


class _Session:
    __slots__ = ("bucket", "bytes", "dropped", "first_seen", "last_seen", "next_seq", "received")

    def __init__(self, now: float, limits: ReflectorLimits) -> None:
        self.next_seq = 0
        self.received = 0
        self.bytes = 0
        self.dropped = 0
        self.first_seen = now
        self.last_seen = now
        # A tenth of a second's worth of burst: a paced train never needs more.
        self.bucket = _Bucket(limits.session_pps, max(10.0, limits.session_pps / 10))


SessionKey = tuple[str, int, str, int]  # source address, port, local address, port

COUNTERS = (
    "received", "reflected", "bytes_in", "bytes_out", "dropped_truncated",
    "dropped_oversized", "dropped_not_allowed", "dropped_source_port",
    "dropped_sessions_full", "dropped_rate_limit", "dropped_session_rate", "send_errors",
    "sessions_total", "sessions_expired",
)  # fmt: skip


class Reflector:
    """A STAMP reflector on one or more UDP sockets of the running event loop.

    ``listen``: ``(address, port)`` pairs (port 0 picks a free one: see
    :attr:`addresses`). ``allow``: networks whose requests are answered (empty: all).
    Use as ``async with Reflector(...) as r:`` or :meth:`start` / :meth:`close`.
    """

    def __init__(
        self,
        listen: Sequence[tuple[str, int]],
        *,
        allow: Iterable[Network] = (),
        limits: ReflectorLimits | None = None,
        stateful: bool = True,
    ) -> None:
        if not listen:
            raise ValueError("listen: give at least one address to listen on")
        self.listen = list(listen)
        self.allow = tuple(allow)
        self.limits = limits or ReflectorLimits()
        self.stateful = stateful
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.sessions: dict[SessionKey, _Session] = {}
        self._per_source: dict[str, int] = {}
        self._sockets: list[socket.socket] = []
        self._local: dict[int, tuple[str, int]] = {}  # fileno -> bound address, port
        self._clock = CLOCK
        lim = self.limits
        self._pps = _Bucket(lim.max_pps, max(10.0, lim.max_pps / 20))
        self._bps = _Bucket(lim.max_bps / 8, max(64_000.0, lim.max_bps / 8 / 20))
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._allowed_cache: dict[str, bool] = {}

    # ------------------------------------------------------------------ life cycle

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound addresses, ports resolved."""
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self._sockets]

    async def start(self) -> Reflector:
        self._loop = asyncio.get_running_loop()
        try:
            for host, port in self.listen:
                sock = _listen_socket(host, port)
                self._sockets.append(sock)
                name = sock.getsockname()
                self._local[sock.fileno()] = (str(name[0]), int(name[1]))
                self._loop.add_reader(sock.fileno(), self._on_readable, sock)
        except BaseException:
            await self.close()
            raise
        self._sweeper = self._loop.call_later(_SWEEP_S, self._sweep)
        return self

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for sock in self._sockets:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        self._local.clear()

    async def __aenter__(self) -> Reflector:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Counters, and the sessions with their own counters (JSON-able)."""
        now = time.monotonic()
        return {
            **self.counters,
            "sessions_active": len(self.sessions),
            "sessions": [
                {"source": f"{key[0]}:{key[1]}", "local": f"{key[2]}:{key[3]}",
                 "received": s.received, "bytes": s.bytes, "dropped": s.dropped,
                 "age_s": round(now - s.first_seen, 3), "idle_s": round(now - s.last_seen, 3)}
                for key, s in self.sessions.items()
            ],
        }  # fmt: skip

    # ------------------------------------------------------------------ hot path

    def _on_readable(self, sock: socket.socket) -> None:
        limit = self.limits.max_packet
        for _ in range(_RECV_BATCH):
            try:
                data, anc, flags, peer = sock.recvmsg(limit + 1, _ANCILLARY)
            except BlockingIOError:
                return
            except OSError:
                continue  # an ICMP error about an answer of ours: nothing to do
            self._request(sock, data, anc, flags, peer)

    def _request(
        self,
        sock: socket.socket,
        data: bytes,
        anc: list[tuple[int, int, bytes]],
        flags: int,
        peer: Any,
    ) -> None:
        t2 = None
        local: str | None = None
        ttl = 255
        tos = 0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == sockopts.SO_TIMESTAMPNS:
                seconds, nanos = sockopts.TIMESPEC.unpack_from(value)
                t2 = seconds * 1_000_000_000 + nanos
            elif level == socket.IPPROTO_IP:
                if kind == sockopts.IP_PKTINFO:
                    local = socket.inet_ntop(socket.AF_INET, value[4:8])
                elif kind == sockopts.IP_TTL:
                    ttl = _TOKEN.unpack_from(value)[0] if len(value) >= 4 else value[0]
                elif kind == sockopts.IP_TOS:
                    tos = value[0]
            elif level == socket.IPPROTO_IPV6:
                if kind == sockopts.IPV6_PKTINFO:
                    local = socket.inet_ntop(socket.AF_INET6, value[:16])
                elif kind == sockopts.IPV6_HOPLIMIT:
                    ttl = _TOKEN.unpack_from(value)[0]
                elif kind == sockopts.IPV6_TCLASS:
                    tos = _TOKEN.unpack_from(value)[0]
        if t2 is None:
            t2 = time.time_ns()
        c = self.counters
        c["received"] += 1
        length = len(data)
        c["bytes_in"] += length
        source, port = str(peer[0]), int(peer[1])
        if flags & _MSG_TRUNC or length > self.limits.max_packet:
            c["dropped_oversized"] += 1
            return
        if length < MIN_REFLECTABLE:
            c["dropped_truncated"] += 1
            return
        if port < self.limits.min_source_port:
            c["dropped_source_port"] += 1
            return
        if self.allow and not self._allowed(source):
            c["dropped_not_allowed"] += 1
            return
        now = time.monotonic()
        if not self._pps.take(1.0, now) or not self._bps.take(length + 28, now):
            c["dropped_rate_limit"] += 1
            return
        bound, bound_port = self._local[sock.fileno()]
        if local is None:
            local = bound
        key = (source, port, local, bound_port)
        session = self.sessions.get(key)
        if session is None:
            session = self._new_session(key, now)
            if session is None:
                c["dropped_sessions_full"] += 1
                return
        session.last_seen = now
        if not session.bucket.take(1.0, now):
            session.dropped += 1
            c["dropped_session_rate"] += 1
            return
        session.received += 1
        session.bytes += length
        sseq, sts, serr, ssid = _SENDER.unpack_from(data)
        if self.stateful:
            seq = session.next_seq
            session.next_seq = (seq + 1) & 0xFFFFFFFF
        else:
            seq = sseq
        t3 = time.time_ns()
        error = self._clock.error_estimate()
        header = _REFLECTED.pack(
            seq, ntp_from_ns(t3), error, ssid, ntp_from_ns(t2), sseq, sts, serr, 0, ttl & 0xFF
        ) + b"\0\0\0"
        # 41-43 octets get the header cut to their length: the same length back, never more.
        answer = header + data[REFLECTOR_HEADER:] if length >= REFLECTOR_HEADER else header[:length]
        try:
            _send_from(sock, answer, peer, local, tos & 0xFC)
        except OSError:
            c["send_errors"] += 1
            return
        c["reflected"] += 1
        c["bytes_out"] += len(answer)

    def _allowed(self, source: str) -> bool:
        cached = self._allowed_cache.get(source)
        if cached is None:
            try:
                address = ipaddress.ip_address(source)
            except ValueError:
                return False
            mapped = getattr(address, "ipv4_mapped", None)
            candidates = [address] if mapped is None else [address, mapped]
            cached = any(a in net for a in candidates for net in self.allow
                         if a.version == net.version)  # fmt: skip
            if len(self._allowed_cache) > 4096:  # spoofed sources must not grow it forever
                self._allowed_cache.clear()
            self._allowed_cache[source] = cached
        return cached

    def _new_session(self, key: SessionKey, now: float) -> _Session | None:
        lim = self.limits
        if len(self.sessions) >= lim.max_sessions:
            self._sweep_idle(now)
            if len(self.sessions) >= lim.max_sessions:
                return None
        if self._per_source.get(key[0], 0) >= lim.max_sessions_per_source:
            return None
        session = _Session(now, lim)
        self.sessions[key] = session
        self._per_source[key[0]] = self._per_source.get(key[0], 0) + 1
        self.counters["sessions_total"] += 1
        return session

    def _sweep(self) -> None:
        self._sweep_idle(time.monotonic())
        if self._loop is not None and self._sockets:
            self._sweeper = self._loop.call_later(_SWEEP_S, self._sweep)

    def _sweep_idle(self, now: float) -> None:
        idle = self.limits.session_idle
        for key in [k for k, s in self.sessions.items() if now - s.last_seen > idle]:
            del self.sessions[key]
            left = self._per_source.get(key[0], 1) - 1
            if left > 0:
                self._per_source[key[0]] = left
            else:
                self._per_source.pop(key[0], None)
            self.counters["sessions_expired"] += 1


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            for option in (sockopts.IPV6_RECVPKTINFO, sockopts.IPV6_RECVHOPLIMIT,
                           sockopts.IPV6_RECVTCLASS):
                sock.setsockopt(socket.IPPROTO_IPV6, option, 1)
        else:
            for option in (sockopts.IP_PKTINFO, sockopts.IP_RECVTTL, sockopts.IP_RECVTOS):
                sock.setsockopt(socket.IPPROTO_IP, option, 1)
        sock.setsockopt(socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == 13 and 0 < port < 1024:
            hint = f" (port {port} needs root or CAP_NET_BIND_SERVICE)"
        elif exc.errno == 98:
            hint = " (something already listens there)"
        elif exc.errno == 99:
            hint = " (no such address on this host)"
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        raise OSError(exc.errno, f"cannot listen on {shown}:{port}: {exc.strerror}{hint}") \
            from None
    return sock


def _send_from(sock: socket.socket, answer: bytes, peer: Any, local: str, tos: int) -> None:
    if sock.family == socket.AF_INET6:
        ancillary = [
            (socket.IPPROTO_IPV6, sockopts.IPV6_PKTINFO,
             sockopts.PKTINFO6.pack(socket.inet_pton(socket.AF_INET6, local), 0)),
            (socket.IPPROTO_IPV6, sockopts.IPV6_TCLASS, _TOKEN.pack(tos)),
        ]  # fmt: skip
    else:
        ancillary = [
            (socket.IPPROTO_IP, sockopts.IP_PKTINFO,
             sockopts.PKTINFO4.pack(0, socket.inet_aton(local), b"\0\0\0\0")),
            (socket.IPPROTO_IP, sockopts.IP_TOS, bytes([tos])),
        ]  # fmt: skip
    sock.sendmsg([answer], ancillary, 0, peer)


# ---------------------------------------------------------------------------- entry points


async def serve(
    listen: Sequence[tuple[str, int]],
    *,
    allow: Iterable[Network] = (),
    limits: ReflectorLimits | None = None,
    stateful: bool = True,
    on_ready: Callable[[Reflector], None] | None = None,
    stop: asyncio.Event | None = None,
    report_every: float = 0.0,
) -> dict[str, Any]:
    """Reflect until ``stop`` is set or the task is cancelled; returns the final stats.

    ``on_ready`` is called once every socket listens (e.g. to print the addresses).
    ``report_every`` > 0 logs the counters that often (INFO).
    """
    reflector = Reflector(listen, allow=allow, limits=limits, stateful=stateful)
    await reflector.start()
    try:
        if on_ready is not None:
            on_ready(reflector)
        waiter = stop or asyncio.Event()
        while not waiter.is_set():
            try:
                async with asyncio.timeout(report_every if report_every > 0 else None):
                    await waiter.wait()
            except TimeoutError:
                counters = {k: v for k, v in reflector.stats().items() if k != "sessions"}
                log.info("reflector counters: %s", counters)
        return reflector.stats()
    finally:
        await reflector.close()


def parse_listen(text: str) -> tuple[str, int]:
    """``0.0.0.0:862``, ``[::]:862``, ``127.0.0.1`` (port 862) → (address, port)."""
    raw = text.strip()
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif raw.count(":") == 1:
        host, _, port_text = raw.partition(":")
    else:
        host, port_text = raw, ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"listen {text!r}: {host!r} is not an IP address") from None
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"listen {text!r}: port {port_text!r} must be 0-65535")
    return host, int(port_text)


def parse_allow(text: str) -> Network:
    """``10.0.0.0/8`` or a single address → a network (host bits ignored)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"allow {text!r}: not an IP network like 10.0.0.0/8") from None


def build_parser(prog: str = "python -m bridgemon.stamp.reflector") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="STAMP reflector (RFC 8762, TWAMP-light compatible): answers the "
        "packet trains of bridgemon and of other STAMP/TWAMP-light senders.",
    )
    parser.add_argument("--listen", action="append", default=[], metavar="ADDR[:PORT]",
                        help="address to listen on (repeatable; default 0.0.0.0:862)")
    parser.add_argument("--allow", action="append", default=[], metavar="NETWORK",
                        help="answer only these sources (repeatable; default: everyone)")
    parser.add_argument("--stateless", action="store_true",
                        help="copy the sender's sequence numbers (no loss per direction)")
    defaults = ReflectorLimits()
    parser.add_argument("--max-sessions", type=int, default=defaults.max_sessions)
    parser.add_argument("--max-sessions-per-source", type=int,
                        default=defaults.max_sessions_per_source)
    parser.add_argument("--max-rate", default=format_rate(defaults.max_bps).replace(" ", ""),
                        help="whole reflector, e.g. 100M (default %(default)s)")
    parser.add_argument("--max-pps", type=float, default=defaults.max_pps)
    parser.add_argument("--ready", action="store_true",
                        help='print "ready ADDR:PORT ..." once listening (for scripts)')
    return parser


def main(argv: list[str] | None = None, *,
         prog: str = "python -m bridgemon.stamp.reflector") -> int:
    """Command line (also what ``bridgemon reflect`` runs, with its ``prog``). Exit
    ``exits.OK`` stopped, ``exits.FAIL`` cannot listen, ``exits.USAGE`` usage error."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exits.OK if exc.code in (None, 0) else exits.USAGE
    try:
        listen = [parse_listen(t) for t in args.listen] or [("0.0.0.0", DEFAULT_PORT)]
        allow = [parse_allow(t) for t in args.allow]
        limits = replace(ReflectorLimits(), max_sessions=args.max_sessions,
                         max_sessions_per_source=args.max_sessions_per_source,
                         max_bps=parse_rate(args.max_rate), max_pps=args.max_pps)
    except ValueError as exc:
        print(f"bridgemon reflect: {exc}", file=sys.stderr)
        return exits.USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def ready(reflector: Reflector) -> None:
        where = " ".join(f"{h}:{p}" for h, p in reflector.addresses)
        log.info("STAMP reflector listening on %s (%s; allow %s)", where,
                 "stateful" if reflector.stateful else "stateless",
                 ", ".join(map(str, allow)) or "everyone")
        if args.ready:
            print(f"ready {where}", flush=True)

    async def run() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await serve(listen, allow=allow, limits=limits, stateful=not args.stateless,
                           on_ready=ready, stop=stop, report_every=300.0)

    try:
        final = asyncio.run(run())
    except OSError as exc:
        print(f"bridgemon reflect: {exc.strerror or exc}", file=sys.stderr)
        return exits.FAIL
    log.info("reflector stopped: %s", {k: v for k, v in final.items() if k != "sessions"})
    return exits.OK


if __name__ == "__main__":
    sys.exit(main())
