"""The ICMP engine: one shared socket per address family for every burst to every site.

Why not icmplib's pingers: they open a socket per host, and every raw ICMP socket receives
every reply on the machine, so at a thousand concurrent hosts each reply is copied and
parsed a thousand times (``benchmarks/icmplib_vs_engine.py``, 1,000 loopback hosts at once:
80 % of icmplib's echoes lost and median RTTs of 80-117 ms; none lost and 2 µs here).
This engine does what fping does instead:

- ONE socket per family, raw (root / CAP_NET_RAW) or unprivileged datagram ICMP
  (``net.ipv4.ping_group_range``), chosen automatically;
- a classic BPF filter on raw sockets (``icmp_filter``) so the kernel hands us only echo
  replies that carry our identifier block and cookie, and the errors that quote our echoes:
  other pingers on the machine (fping, smokeping, a second bridgemon) cost us neither
  buffer space nor CPU. Ping sockets get the same from the kernel's own demultiplexing;
- replies matched to echoes by (identifier, sequence) in a dict, then checked against the
  cookie and the source address, so nothing but the target's reply can count;
- kernel receive timestamps (SO_TIMESTAMPNS), so an RTT is exact however late we read
  the reply: a busy event loop does not inflate it; and the kernel's count of replies it
  dropped for want of buffer (SO_RXQ_OVFL), exported so a loss we caused is visible;
- and because of that, a tick: every ``tick`` (50 ms by default) while anything is
  outstanding, one wake-up reads every reply that arrived, sends every echo due and ends
  every burst whose time is up (about 2 ms of that work per turn of the loop, the rest in
  the next turns, so the tick is never the loop's longest wait). No task, future or
  timer per echo, no wake-up per reply.
  Waking up costs far more than the work done in it on a small VM: measured here at 6,000
  sites, a 10 ms tick cost 50 µs of CPU per echo, 20 ms 42 µs, 50 ms 29 µs (fping: ~27).
  While nothing is outstanding the socket is watched by the loop instead, so late replies
  never sit in the buffer between rounds.

Echo sends are quantised to the tick: a burst's echoes go out ``spacing`` apart, give or
take one tick; RTTs are unaffected (the send time is taken right before each send, the
receive time by the kernel). Callers pace bursts on the same tick grid (``Pinger.tick``)
so launching sites shares the wake-up; the engine paces the echoes inside a burst.

Truth when the loop stalls (a slow callback, a GC pause): each echo is scheduled from the
previous one's actual send, and a burst's deadline counts from its last actual send, so an
echo that left late still gets its full ``timeout``; a late tick reads the socket before
it ends any burst, and judges each reply by its kernel timestamp, so a reply that arrived
in time counts even when it is read late.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bridgemon import cooperative
from bridgemon.probes import icmp_filter
from bridgemon.probes.icmp_packets import (
    COOKIE_SIZE,
    ICMP6_ECHO_REPLY,
    ICMP_ECHO_REPLY,
    EchoTemplate,
    Reply,
    parse_v4,
    parse_v6,
)
from bridgemon.probes.result import EchoBurst
from bridgemon.stamp import sockopts

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
_TIMESPEC = struct.Struct("@qq")
_DROPS = struct.Struct("@I")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_DROPS.size)
_IDENT_SEQ = struct.Struct("!HH")
_RECV_BUFFER = 4 * 1024 * 1024
DEFAULT_TICK = 0.05  # engine tick, seconds
_FINISH = -1  # wheel action index meaning "the burst's deadline"
_READ_EVERY = 16  # echoes a slice sends between two reads of the socket
_REPORTS_PER_TURN = 16  # bursts' done() called in one turn of the loop, at most
_KEY_SPACE = 1 << (16 + icmp_filter.IDENT_BLOCK_BITS)  # raw sockets: identifier block × seq

Mode = Literal["auto", "raw", "dgram"]


class PingerUnavailable(Exception):
    """No ICMP socket can be opened with this process's privileges. (An Exception: mypyc
    compiles this module, and its classes may derive from no other built-in.)"""


def privilege_hint() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", "rb") as f:
            groups = " ".join(f.read().decode().split())
    except OSError:
        groups = "unknown"
    return (
        "raw ICMP sockets need root or CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_RAW; "
        "or setcap cap_net_raw+ep on the Python binary); unprivileged ICMP sockets need "
        f"this process's group (gid {os.getgid()}) inside net.ipv4.ping_group_range, "
        f"which is now '{groups}' (sysctl -w net.ipv4.ping_group_range='0 2147483647')"
    )


@dataclass(slots=True)
class _Burst:
    address: str
    fam: _FamilySocket
    template: EchoTemplate
    sockaddr: tuple[str, int] | tuple[str, int, int, int]
    count: int
    spacing: float
    timeout: float
    timeout_ns: int
    planned: float  # loop time the next echo is due, moved on when the loop ran late
    send_ns: list[int]
    rtts: list[float | None]
    keys: list[int]
    resolved: int
    error: str | None
    done: Callable[[EchoBurst], None]  # called once, after the tick that ended it
    finished: bool = False


BurstHandle = _Burst  # what ``start`` gives back, for ``cancel``; nothing else to read in it


# More than a receive buffer of small packets holds; packets that arrive after the filter
# is attached are filtered, so the queue this drains can only shrink.
_PRE_FILTER_DISCARD_LIMIT = 100_000


class _FamilySocket:
    """One ICMP socket for one address family, in raw or datagram mode."""

    def __init__(self, family: int, mode: Mode, ident_base: int, cookie: bytes) -> None:
        self.family = family
        self.ipv6 = family == socket.AF_INET6
        proto = socket.IPPROTO_ICMPV6 if self.ipv6 else socket.IPPROTO_ICMP
        errors: list[str] = []
        sock: socket.socket | None = None
        for kind in (("raw", "dgram") if mode == "auto" else (mode,)):
            sock_type = socket.SOCK_RAW if kind == "raw" else socket.SOCK_DGRAM
            try:
                sock = socket.socket(family, sock_type, proto)
                self.mode: Literal["raw", "dgram"] = "raw" if kind == "raw" else "dgram"
                break
            except PermissionError as exc:
                errors.append(f"{kind}: {exc.strerror}")
        if sock is None:
            fam = "IPv6" if self.ipv6 else "IPv4"
            raise PingerUnavailable(
                f"cannot open an {fam} ICMP socket ({'; '.join(errors)}): {privilege_hint()}"
            )
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        with contextlib.suppress(OSError):  # not Linux: the drops stay uncounted
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        sockopts.set_receive_buffer(sock, _RECV_BUFFER)
        self.kernel_filter = False
        if self.mode == "raw":
            self._install_filter(ident_base, cookie)
        self.drops = 0  # replies the kernel dropped for want of buffer (SO_RXQ_OVFL)
        self.watched = False  # registered with the loop's reader while idle
        self.local_ident = 0
        self.has_ip_header = self.mode == "raw" and not self.ipv6
        self.echo_reply_type = ICMP6_ECHO_REPLY if self.ipv6 else ICMP_ECHO_REPLY
        # (identifier << 16 | sequence) -> the burst and echo index it belongs to
        self.pending: dict[int, tuple[_Burst, int]] = {}
        if self.mode == "dgram":
            sock.bind(("::", 0) if self.ipv6 else ("0.0.0.0", 0))
            self.local_ident = sock.getsockname()[1]

    def _install_filter(self, ident_base: int, cookie: bytes) -> None:
        # ICMP_FILTER (by type) keeps out the echo requests we read back on loopback; the
        # BPF program keeps out everything that is not ours (see icmp_filter).
        try:
            icmp_filter.attach(self.sock, ipv6=self.ipv6, ident_base=ident_base, cookie=cookie)
            self.kernel_filter = True
        except OSError:  # no classic BPF here: the cookie check below still protects us
            pass
        if self.ipv6:
            blocked = [0xFFFFFFFF] * 8
            for allowed in (129, 1, 2, 3):
                blocked[allowed >> 5] &= ~(1 << (allowed & 31))
            self.sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("8I", *blocked))
        else:
            allowed_mask = (1 << 0) | (1 << 3) | (1 << 11)
            self.sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~allowed_mask & 0xFFFFFFFF))
        self._discard_queued()

    def _discard_queued(self) -> None:
        """Drop what the socket queued before its filters were attached.

        A raw socket receives every ICMP packet from its creation on; until the filters are
        in place, another pinger's echoes and replies queue up too. None of them can be
        ours (nothing has been sent yet), so they go without being parsed or counted.
        Bounded: a flood cannot keep this loop going.
        """
        for _ in range(_PRE_FILTER_DISCARD_LIMIT):
            try:
                self.sock.recv(1)
            except (BlockingIOError, InterruptedError):
                return

    def parse(self, packet: bytes) -> Reply | None:
        if self.ipv6:
            return parse_v6(packet)
        return parse_v4(packet, has_ip_header=self.mode == "raw")


class Pinger:
    """Send ICMP echo bursts and collect their replies over shared sockets.

    Create it inside a running event loop; ``close()`` it when done.
    """

    def __init__(self, mode: Mode = "auto", *, tick: float = DEFAULT_TICK) -> None:
        self._mode: Mode = mode
        self.tick = tick
        self._loop = asyncio.get_running_loop()
        self._sockets: dict[int, _FamilySocket] = {}
        self._cookie = os.urandom(COOKIE_SIZE)
        # Raw sockets: the identifier block the kernel filter lets through; 20-bit keys
        # (identifier offset, sequence), so a key is reused only after a million echoes.
        self._ident_base = int.from_bytes(os.urandom(2), "big") & icmp_filter.IDENT_BLOCK_MASK
        self._templates: dict[tuple[int, bool], EchoTemplate] = {}
        self._counter = int.from_bytes(os.urandom(4), "big") % _KEY_SPACE
        self._targets: dict[str, tuple[int, str, tuple[str, int] | tuple[str, int, int, int]]] = {}
        # The wheel: tick number -> (burst, echo index or _FINISH) due in that tick.
        self._wheel: dict[int, list[tuple[_Burst, int]]] = {}
        self._ticks: list[int] = []  # heap of the wheel's tick numbers
        # What is due and a slice has not done yet (what ticks found due, and the first
        # echoes of new bursts), and whether a slice is queued.
        self._due: deque[tuple[_Burst, int]] = deque()
        self._working = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_tick: int | None = None
        self._outstanding = 0  # echoes sent and not yet answered or given up
        self.echoes_sent = 0
        self.echoes_received = 0
        self.stray_replies = 0
        self.ticks = 0
        self._closed = False
        # Ended bursts whose done() is still to be called, and whether a drain is queued.
        self._reports: deque[tuple[Callable[[EchoBurst], None], EchoBurst]] = deque()
        self._reporting = False

    # -- sockets -------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The ICMP socket mode asked for ("auto", "raw" or "dgram"); other ICMP users in
        the process (the path-MTU check) follow it."""
        return self._mode

    def _socket_for(self, family: int) -> _FamilySocket:
        fam = self._sockets.get(family)
        if fam is None:
            fam = _FamilySocket(family, self._mode, self._ident_base, self._cookie)
            self._sockets[family] = fam
            self._watch_idle()
        return fam

    def check(self) -> str:
        """Open the IPv4 socket now (raising PingerUnavailable) and say which mode it uses."""
        return self._socket_for(socket.AF_INET).mode

    @property
    def receive_drops(self) -> int:
        """Replies the kernel dropped because our socket buffer was full (all families)."""
        return sum(fam.drops for fam in self._sockets.values())

    @property
    def kernel_filtered(self) -> bool:
        """Whether every socket has other processes' ICMP kept out by the kernel."""
        return all(fam.kernel_filter or fam.mode == "dgram" for fam in self._sockets.values())

    @property
    def modes(self) -> dict[str, str]:
        return {
            ("ipv6" if f == socket.AF_INET6 else "ipv4"): s.mode for f, s in self._sockets.items()
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fam in self._sockets.values():
            for burst, _ in list(fam.pending.values()):
                self._finish(burst)
            if fam.watched:
                self._loop.remove_reader(fam.sock)
            fam.sock.close()
        self._sockets.clear()
        if self._wake is not None:
            self._wake.cancel()
        self._wheel.clear()
        self._ticks.clear()
        self._due.clear()

    # -- bursts --------------------------------------------------------------------------

    async def burst(
        self,
        address: str,
        *,
        count: int = 5,
        spacing: float = 0.2,
        timeout: float = 1.0,
        size: int = 56,
    ) -> EchoBurst:
        """Send ``count`` echoes to ``address`` (an IP literal), ``spacing`` seconds apart.

        Each echo waits up to ``timeout`` for its reply. Never raises for network trouble:
        a send error, an ICMP error reply or silence all end up in the returned EchoBurst.
        Raises PingerUnavailable if no ICMP socket can be opened at all, ValueError if
        ``address`` is not an IP address.
        """
        future: asyncio.Future[EchoBurst] = self._loop.create_future()

        def done(result: EchoBurst) -> None:
            if not future.done():
                future.set_result(result)

        burst = self.start(address, done, count=count, spacing=spacing, timeout=timeout,
                           size=size)
        try:
            return await future
        finally:
            self.cancel(burst)  # cancelled: forget the echoes still out

    def start(
        self,
        address: str,
        done: Callable[[EchoBurst], None],
        *,
        count: int = 5,
        spacing: float = 0.2,
        timeout: float = 1.0,
        size: int = 56,
    ) -> BurstHandle:
        """``burst`` without a task or a future: ``done(result)`` is called once, after the
        tick that ended the burst (never inside it), unless the burst is given up with
        ``cancel`` before it ends. The same measurement as ``burst``; at 12,000 sites a
        task and a future per site cost a tenth of the daemon's CPU.
        """
        if self._closed:
            raise RuntimeError("pinger is closed")
        target = self._targets.get(address)
        if target is None:
            target = self._targets[address] = _parse_target(address)
            if len(self._targets) > 200_000:  # addresses come from the inventory; stay bounded
                self._targets.clear()
        family, text, sockaddr = target
        fam = self._socket_for(family)
        template = self._templates.get((size, fam.ipv6))
        if template is None:
            template = EchoTemplate(self._cookie, size, fam.ipv6)
            self._templates[(size, fam.ipv6)] = template
        burst = _Burst(
            address=text,
            fam=fam,
            template=template,
            sockaddr=sockaddr,
            count=count,
            spacing=spacing,
            timeout=timeout,
            timeout_ns=int(timeout * 1e9),
            planned=self._loop.time(),
            send_ns=[0] * count,
            rtts=[None] * count,
            keys=[],
            resolved=0,
            error=None,
            done=done,
        )
        # The first echo goes out in the loop's next turn, with whatever else is due, a
        # slice at a time (a round that starts late can start hundreds of sites at once);
        # each echo sent schedules the next one, the last one the burst's deadline.
        self._due.append((burst, 0))
        if not self._working:
            self._working = True
            self._loop.call_soon(self._work_on)
        return burst

    def cancel(self, burst: BurstHandle) -> None:
        """Give up a burst started with ``start``: its echoes still out are forgotten and
        its ``done`` is not called. Nothing happens for a burst that has finished."""
        self._finish(burst, report=False)

    def _next_key(self, fam: _FamilySocket) -> int:
        while True:
            self._counter = (self._counter + 1) & 0xFFFFFFFF
            if fam.mode == "dgram":
                # The kernel owns the identifier of a ping socket; only seq is ours.
                key = (fam.local_ident << 16) | (self._counter & 0xFFFF)
            else:
                self._counter %= _KEY_SPACE
                key = (self._ident_base << 16) | self._counter
            if key not in fam.pending:
                return key

    # -- the tick ------------------------------------------------------------------------

    def _schedule(self, when: float, burst: _Burst, index: int) -> None:
        tick = math.ceil(when / self.tick - 1e-9)
        actions = self._wheel.get(tick)
        if actions is None:
            self._wheel[tick] = [(burst, index)]
            heapq.heappush(self._ticks, tick)
        else:
            actions.append((burst, index))
        wake = self._wake_tick
        if wake is None or tick < wake:  # (_arm's test: mostly the wake-up is sooner)
            self._arm(tick)

    def _arm(self, tick: int) -> None:
        if self._closed:
            return
        if self._wake_tick is None or tick < self._wake_tick:
            if self._wake is not None:
                self._wake.cancel()
            self._wake_tick = tick
            self._wake = self._loop.call_at(tick * self.tick, self._tick)

    def _tick(self) -> None:
        self._wake = None
        self._wake_tick = None
        self.ticks += 1
        now_tick = math.floor(self._loop.time() / self.tick + 1e-6)
        ticks = self._ticks
        while ticks and ticks[0] <= now_tick:
            self._due.extend(self._wheel.pop(heapq.heappop(ticks)))
        self._work()

    def _work(self) -> None:
        """Read every reply in, then send the echoes and end the bursts that are due, a
        slice (``cooperative.BUDGET``, the replies to its echoes read included) at a time:
        what is left goes on in the loop's next turn, after reading again. A tick of
        12,000 sites sends and reads about 125 echoes, 5-10 ms in one go here, and was
        the loop's longest turn; an echo that leaves a few milliseconds later costs
        nothing, its RTT and deadline count from when it actually left."""
        if self._closed:
            return
        self._read_all()  # replies first: an echo answered before its deadline counts
        due = self._due
        clock = time.perf_counter
        until = clock() + cooperative.BUDGET
        unread = 0  # echoes sent since the last read
        while due:
            burst, index = due.popleft()
            if burst.finished:
                continue
            if index == _FINISH:
                self._finish(burst)
            else:
                self._send(burst, index)
                unread += 1
                if unread == _READ_EVERY:
                    # Near hosts have answered already: reading them is part of the slice
                    # (on loopback a slice's replies took as long again as its sends, and
                    # read only after it, a 2 ms slice held the loop 8-9 ms).
                    self._read_all()
                    unread = 0
            if clock() >= until:
                break
        if unread:
            self._read_all()
        if due and not self._working:
            self._working = True
            self._loop.call_soon(self._work_on)
        if self._outstanding:
            self._arm(math.floor(self._loop.time() / self.tick + 1e-6) + 1)
        elif self._ticks:
            self._arm(self._ticks[0])
        self._watch_idle()

    def _work_on(self) -> None:
        self._working = False
        self._work()

    def _watch_idle(self) -> None:
        """Between rounds (nothing outstanding, nothing scheduled) the tick sleeps, so let
        the loop tell us of late replies: they would otherwise sit in the buffer until the
        next round. While bursts run the tick reads, and a wake-up per reply would cost
        more than it tells."""
        idle = not self._outstanding and not self._ticks and not self._due
        if idle and not self._closed:
            for fam in self._sockets.values():
                if not fam.watched:
                    self._loop.add_reader(fam.sock, self._read, fam)
                    fam.watched = True

    # -- echoes --------------------------------------------------------------------------

    def _send(self, burst: _Burst, index: int) -> None:
        fam = burst.fam
        key = self._next_key(fam)
        packet = burst.template.build(key >> 16, key & 0xFFFF)
        self._plan_next(burst, index)
        fam.pending[key] = (burst, index)
        burst.keys.append(key)
        burst.send_ns[index] = time.time_ns()
        try:
            fam.sock.sendto(packet, burst.sockaddr)
        except OSError as exc:
            del fam.pending[key]
            burst.error = f"send failed: {exc.strerror or exc}"
            self._resolve_echo(burst)
            return
        if not self._outstanding:
            self._watch_idle_off()  # the tick reads from now on
        self._outstanding += 1
        self.echoes_sent += 1

    def _plan_next(self, burst: _Burst, index: int) -> None:
        """Schedule what follows echo ``index``, which is being sent now.

        Normally echo i+1 is due ``spacing`` after echo i was due (sends stay on the plan
        give or take a tick). When the loop ran late by more than two ticks, the plan moves
        with it: the next echo keeps its spacing from this one's actual send, and the
        deadline counts from the last echo's actual send, never from when it should have
        left.
        """
        now = self._loop.time()
        if now - burst.planned > 2 * self.tick:
            burst.planned = now
        if index + 1 < burst.count:
            burst.planned += burst.spacing
            self._schedule(burst.planned, burst, index + 1)
        else:
            self._schedule(now + burst.timeout, burst, _FINISH)

    def _watch_idle_off(self) -> None:
        for fam in self._sockets.values():
            if fam.watched:
                self._loop.remove_reader(fam.sock)
                fam.watched = False

    def _resolve_echo(self, burst: _Burst) -> None:
        burst.resolved += 1
        if burst.resolved >= burst.count:
            self._finish(burst)

    def _finish(self, burst: _Burst, *, report: bool = True) -> None:
        if burst.finished:
            return
        burst.finished = True
        pending = burst.fam.pending
        for key in burst.keys:
            entry = pending.get(key)
            if entry is not None and entry[0] is burst:
                del pending[key]
                self._outstanding -= 1
        if report:
            self._reports.append((burst.done, EchoBurst(burst.address, tuple(burst.rtts),
                                                        burst.error)))
            if not self._reporting:
                self._reporting = True
                self._loop.call_soon(self._report)

    def _report(self) -> None:
        """Call the ended bursts' done(), one loop slice (``cooperative.BUDGET``, and at
        most ``_REPORTS_PER_TURN``) at a time.

        A tick can end a hundred bursts, and each done() judges its site (~0.1 ms): called
        in one go they held the loop 10-15 ms, the worst of its lag at 12,000 sites. The
        done() of ``burst`` only wakes a task, whose work comes in the loop's next turn:
        so the count too, or a national test run woke hundreds of tasks in one turn."""
        reports = self._reports
        clock = time.perf_counter
        until = clock() + cooperative.BUDGET
        left = _REPORTS_PER_TURN
        while reports:
            done, result = reports.popleft()
            try:
                done(result)
            except Exception as exc:  # as the loop would report a callback's exception
                self._loop.call_exception_handler({
                    "message": f"exception in the done() of a burst to {result.address}",
                    "exception": exc,
                })
            left -= 1
            if not left or clock() >= until:
                break
        if reports:
            self._loop.call_soon(self._report)
        else:
            self._reporting = False

    # -- replies -------------------------------------------------------------------------

    def _read_all(self) -> None:
        for fam in self._sockets.values():
            self._read(fam)

    def _read(self, fam: _FamilySocket) -> None:
        sock = fam.sock
        pending = fam.pending
        while True:
            try:
                packet, ancdata, _flags, source = sock.recvmsg(65535, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # An error queued on the socket (e.g. ECONNREFUSED on a ping socket) is
                # reported once by recvmsg; the echo it concerns simply times out.
                continue
            # Fast path for the common case, an echo reply; anything else goes through
            # the full (fuzzed) parser.
            offset = (packet[0] & 0x0F) << 2 if fam.has_ip_header and packet else 0
            if len(packet) >= offset + 16 and packet[offset] == fam.echo_reply_type:
                ident, seq = _IDENT_SEQ.unpack_from(packet, offset + 4)
                if fam.mode == "dgram":
                    ident = fam.local_ident
                key = (ident << 16) | seq
                entry = pending.get(key)
                if (
                    entry is None
                    or source[0] != entry[0].address
                    or packet[offset + 8 : offset + 16] != self._cookie
                ):
                    self.stray_replies += 1
                    continue
            else:
                reply = fam.parse(packet)
                if reply is None:
                    continue
                ident = fam.local_ident if fam.mode == "dgram" else reply.ident
                key = (ident << 16) | reply.seq
                entry = pending.get(key)
                if entry is None or (reply.cookie and reply.cookie != self._cookie):
                    self.stray_replies += 1
                    continue
                if reply.kind == "error":
                    del pending[key]
                    self._outstanding -= 1
                    entry[0].error = f"{reply.error} (from {source[0]})"
                    self._resolve_echo(entry[0])
                    continue
            burst, index = entry
            del pending[key]
            self._outstanding -= 1
            # The usual ancillary data is the timestamp alone (the drop count comes only
            # once the kernel has dropped something): read it here, without a call.
            if len(ancdata) == 1 and ancdata[0][1] == SO_TIMESTAMPNS \
                    and ancdata[0][0] == socket.SOL_SOCKET and len(ancdata[0][2]) >= 16:
                seconds, nanos = _TIMESPEC.unpack_from(ancdata[0][2])
                rtt_ns = seconds * 1_000_000_000 + nanos - burst.send_ns[index]
            else:
                rtt_ns = self._kernel_timestamp(fam, ancdata) - burst.send_ns[index]
            if rtt_ns <= burst.timeout_ns:
                burst.rtts[index] = max(rtt_ns, 0) / 1e9
                self.echoes_received += 1
            burst.resolved += 1
            if burst.resolved >= burst.count:
                self._finish(burst)

    @staticmethod
    def _kernel_timestamp(fam: _FamilySocket, ancdata: list[tuple[int, int, bytes]]) -> int:
        """The reply's kernel receive time; notes the socket's drop count on the way."""
        stamp = 0
        for level, kind, data in ancdata:
            if level != socket.SOL_SOCKET:
                continue
            if kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack_from(data)
                stamp = int(seconds) * 1_000_000_000 + int(nanos)
            elif kind == SO_RXQ_OVFL and len(data) >= _DROPS.size:
                fam.drops = max(fam.drops, _DROPS.unpack_from(data)[0])
        return stamp or time.time_ns()


def _parse_target(
    address: str,
) -> tuple[int, str, tuple[str, int] | tuple[str, int, int, int]]:
    """Family, canonical text and socket address of an IP literal (ValueError if not one)."""
    try:
        socket.inet_pton(socket.AF_INET, address)
        return socket.AF_INET, address, (address, 0)
    except OSError:
        pass
    try:
        text = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, address))
    except OSError:
        raise ValueError(f"not an IP address: {address!r}") from None
    return socket.AF_INET6, text, (text, 0, 0, 0)



