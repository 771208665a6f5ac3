"""Path MTU check: do full-size packets with DF set reach the site, and if not, why?

``await probe_pmtu("10.1.2.3", size=1472)`` sends ICMP echoes of ``size`` octets of
payload (1472 + 8 ICMP + 20 IP = a 1500-octet packet) with Don't Fragment set and tells:

* ``ok`` — the echo came back: 1500-octet packets pass;
* ``frag_needed`` — a router answered ICMP "fragmentation needed" with its next-hop MTU
  (e.g. 1400 behind PPPoE or a VPN): path MTU discovery works, the MTU is small;
* ``black_hole`` — nothing came back although small echoes do: a router drops large
  packets *silently* (ICMP filtered somewhere). A short search (at most
  ``search_steps`` probes) then brackets the size that still passes;
* ``local_mtu`` — this host's own interface cannot send that size;
* ``no_reply`` — not even small echoes come back: the MTU cannot be judged (no ping).

What it needs: a raw ICMP socket (root or CAP_NET_RAW, as bridgemon's pinger has), or
else an unprivileged ICMP socket, which Linux allows to groups listed in
``net.ipv4.ping_group_range``. Either way the socket sets ``IP_MTU_DISCOVER`` to
``IP_PMTUDISC_PROBE`` (DF set, and the kernel's cached path MTU ignored, so every probe
tests the path again rather than failing locally) and reads the ICMP errors the kernel
matches to our echoes from its error queue (``IP_RECVERR``), which works the same for
both kinds of socket. IPv4 only: IPv6 routers never fragment, and its "packet too big"
check is left for later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bridgemon.probes import icmp_filter
from bridgemon.probes.icmp_packets import checksum
from bridgemon.stamp import sockopts
from bridgemon.verdicts import State

Outcome = Literal["ok", "frag_needed", "black_hole", "local_mtu", "no_reply"]
IP_ICMP_HEADERS = 28
DEFAULT_SIZE = 1472
SMALL_SIZE = 56
MAX_SIZE = 65507
_ECHO = struct.Struct("!BBHHH")
_RECV_BUFFER = 4 * 1024 * 1024


class PmtuError(Exception):
    """The probe cannot run here (no permission for an ICMP socket, bad arguments)."""


@dataclass(frozen=True, slots=True)
class PmtuResult:
    address: str
    size: int  # ICMP payload octets of the full-size probe
    outcome: Outcome
    mtu: int | None  # the MTU reported (frag_needed, local_mtu) or bracketed (black_hole)
    largest_ok: int | None  # black_hole: the largest packet (IP octets) that came back
    smallest_lost: int | None  # black_hole: the smallest packet that did not
    reporter: str | None  # who sent "fragmentation needed"
    rtt: float | None  # seconds, of the full-size echo (ok)
    mode: Literal["raw", "dgram"]
    probes: int

    @property
    def packet_size(self) -> int:
        return self.size + IP_ICMP_HEADERS

    @property
    def passed(self) -> bool:
        return self.outcome == "ok"

    @property
    def state(self) -> State:
        if self.outcome == "ok":
            return State.READY
        return State.UNKNOWN if self.outcome == "no_reply" else State.NOT_READY

    @property
    def reason(self) -> tuple[str, str] | None:
        """(English, Vietnamese) words for anything but ``ok``."""
        packet = self.packet_size
        if self.outcome == "frag_needed":
            by = f" by {self.reporter}" if self.reporter else ""
            by_vi = f" bởi {self.reporter}" if self.reporter else ""
            return (
                f"fragmentation needed, path MTU {self.mtu}: {packet}-byte packets with DF "
                f"set are refused{by}",
                f"cần phân mảnh, MTU đường truyền {self.mtu}: gói {packet} B có cờ DF bị từ "
                f"chối{by_vi}",
            )
        if self.outcome == "black_hole":
            between = ""
            between_vi = ""
            if self.largest_ok and self.smallest_lost:
                between = (f"; {self.largest_ok} bytes pass, {self.smallest_lost} do not "
                           f"(path MTU about {self.largest_ok})")
                between_vi = (f"; gói {self.largest_ok} B đi qua, {self.smallest_lost} B thì "
                              f"không (MTU đường truyền khoảng {self.largest_ok})")
            return (
                f"MTU black hole: {packet}-byte packets with DF set vanish without any ICMP "
                f"error{between}",
                f"hố đen MTU: gói {packet} B có cờ DF bị mất mà không có thông báo ICMP nào"
                f"{between_vi}",
            )
        if self.outcome == "local_mtu":
            return (
                f"this host's own interface MTU is {self.mtu}, below the {packet} bytes tested",
                f"MTU giao diện mạng của chính máy giám sát là {self.mtu}, nhỏ hơn {packet} B "
                "cần thử",
            )
        if self.outcome == "no_reply":
            return (
                f"{self.address} does not answer ping even with small packets: the path MTU "
                "cannot be checked",
                f"{self.address} không trả lời ping kể cả gói nhỏ: không kiểm tra được MTU",
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        reason = self.reason
        return {
            "address": self.address,
            "size": self.size,
            "packet_size": self.packet_size,
            "outcome": self.outcome,
            "state": self.state,
            "mtu": self.mtu,
            "largest_ok": self.largest_ok,
            "smallest_lost": self.smallest_lost,
            "reporter": self.reporter,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
            "mode": self.mode,
            "probes": self.probes,
            "reason": None if reason is None else reason[0],
            "reason_vi": None if reason is None else reason[1],
        }


@dataclass(frozen=True, slots=True)
class _Answer:
    kind: Literal["reply", "error", "timeout", "local"]
    rtt: float | None = None
    report: sockopts.IcmpReport | None = None


async def probe_pmtu(
    address: str,
    *,
    size: int = DEFAULT_SIZE,
    timeout: float = 1.0,
    attempts: int = 2,
    search_steps: int = 6,
    mode: Literal["auto", "raw", "dgram"] = "auto",
    share: PmtuSockets | None = None,
) -> PmtuResult:
    """Check that ``size`` octets of ICMP payload with DF set reach ``address`` (IPv4).

    At most ``2 × attempts + search_steps`` echoes, each awaited ``timeout`` seconds.
    ``share``: the probes running at the same time use one socket (a test run's); without
    it the probe opens its own. PmtuError when no ICMP socket can be opened or the
    arguments are wrong.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise PmtuError(f"address {address!r}: an IPv4 address is needed") from None
    if ip.version != 4:
        raise PmtuError(f"address {address}: the path MTU check is IPv4 only for now")
    if not SMALL_SIZE < size <= MAX_SIZE:
        raise PmtuError(f"size {size}: must be {SMALL_SIZE + 1}-{MAX_SIZE} octets of payload")
    if not (0 < timeout <= 10 and 1 <= attempts <= 5 and 0 <= search_steps <= 12):
        raise PmtuError("timeout must be 0-10 s, attempts 1-5, search_steps 0-12")
    share = share or PmtuSockets()
    sock = share.acquire(mode)
    try:
        return await _Prober(str(ip), sock).run(size, timeout, attempts, search_steps)
    finally:
        share.release(sock)


class PmtuSockets:
    """The ICMP socket that every path MTU probe of a process running at the same time
    shares, open while at least one runs.

    One socket per probe does not scale: the kernel hands a copy of every ICMP packet the
    host receives to every raw ICMP socket, walking all of them for each packet, so a test
    run of 2,000 loopback sites with a thousand probes at once took 12 s instead of 5 (and
    once, on a loaded machine, lost 88 healthy sites' replies to full buffers). Shared, the
    probes are told apart by sequence number and address, and the run takes no longer
    than without the check.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[_SharedSocket, int]] = {}  # by mode asked: (it, users)

    def acquire(self, mode: str) -> _SharedSocket:
        sock, users = self._open.get(mode) or (_SharedSocket(mode), 0)
        self._open[mode] = (sock, users + 1)
        return sock

    def release(self, sock: _SharedSocket) -> None:
        for mode, (held, users) in list(self._open.items()):
            if held is sock:
                if users > 1:
                    self._open[mode] = (held, users - 1)
                else:
                    del self._open[mode]
                    held.close()
                return


class _SharedSocket:
    """One ICMP socket (DF set, errors read from its error queue) and the echoes awaited
    on it, keyed by sequence number."""

    def __init__(self, mode: str) -> None:
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.sock, self.mode = _open(mode, self.ident)
        self.loop = asyncio.get_running_loop()
        self.seq = 0
        # sequence number -> (the address echoed, when sent, its answer)
        self.pending: dict[int, tuple[str, float, asyncio.Future[_Answer]]] = {}
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _next_seq(self) -> int:
        if len(self.pending) >= 0xFFFF:
            raise PmtuError("too many path MTU echoes awaited at once (65,535)")
        while True:
            self.seq = (self.seq + 1) & 0xFFFF
            if self.seq not in self.pending:
                return self.seq

    async def echo(self, address: str, size: int, timeout: float) -> _Answer:
        seq = self._next_seq()
        packet = _echo_request(self.ident, seq, size)
        future: asyncio.Future[_Answer] = self.loop.create_future()
        self.pending[seq] = (address, time.monotonic(), future)
        try:
            try:
                self.sock.sendto(packet, (address, 0))
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    # The kernel queued a local error quoting our echo: read it as any.
                    self._drain_errors()
                    return future.result() if future.done() else _Answer("local")
                raise PmtuError(f"cannot send an echo to {address}: {exc.strerror}") \
                    from None
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                return _Answer("timeout")
        finally:
            self.pending.pop(seq, None)

    def _on_readable(self) -> None:
        got = 0
        for _ in range(64):
            try:
                data, _, _, src = self.sock.recvmsg(MAX_SIZE + 64, 0)
            except BlockingIOError:
                break
            except OSError:
                break  # an error surfacing: it is read from the queue below
            got += 1
            self._reply(data, src)
        if got < 64:
            self._drain_errors()

    def _reply(self, data: bytes, src: Any) -> None:
        if self.mode == "raw":
            if len(data) < 20:
                return
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) < _ECHO.size:
            return
        kind, _code, _sum, ident, seq = _ECHO.unpack_from(data)
        if kind != 0 or (self.mode == "raw" and ident != self.ident):
            return
        self._settle(seq, src[0] if isinstance(src, tuple) and src else None,
                     lambda sent: _Answer("reply", rtt=time.monotonic() - sent))

    def _drain_errors(self) -> None:
        for _ in range(64):
            try:
                data, anc, _, dest = self.sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return
            report = sockopts.parse_error_cmsg(anc)
            if report is None or len(data) < _ECHO.size:
                continue
            # The queued data is our echo as the router quoted it, ``dest`` its
            # destination: which probe the error is about. The kernel hands every ICMP
            # error to every unconnected raw ICMP socket (another process's too), so a
            # raw socket also checks that the echo quoted is one of ours.
            _kind, _code, _sum, ident, seq = _ECHO.unpack_from(data)
            if self.mode == "raw" and ident != self.ident:
                continue
            to = dest[0] if isinstance(dest, tuple) and dest else None
            kind = "local" if report.kind == "local_msgsize" else "error"
            self._settle(seq, to, lambda _sent, r=report, k=kind: _Answer(k, report=r))

    def _settle(self, seq: int, address: str | None, make: Any) -> None:
        entry = self.pending.get(seq)
        if entry is not None and entry[0] == address and not entry[2].done():
            entry[2].set_result(make(entry[1]))


class _Prober:
    """One site's probe: the full size, then small, then a search, on a shared socket."""

    def __init__(self, address: str, sock: _SharedSocket) -> None:
        self.address = address
        self.sock = sock
        self.probes = 0

    def _result(self, size: int, outcome: Outcome, **fields: Any) -> PmtuResult:
        values: dict[str, Any] = {"mtu": None, "largest_ok": None, "smallest_lost": None,
                                  "reporter": None, "rtt": None, **fields}
        return PmtuResult(address=self.address, size=size, outcome=outcome,
                          mode=self.sock.mode,  # type: ignore[arg-type]
                          probes=self.probes, **values)

    async def run(self, size: int, timeout: float, attempts: int, steps: int) -> PmtuResult:
        answer = await self._try(size, timeout, attempts)
        if answer.kind == "reply":
            return self._result(size, "ok", rtt=answer.rtt)
        if answer.kind in ("error", "local"):
            return self._from_error(size, answer)
        small = await self._try(SMALL_SIZE, timeout, attempts)
        if small.kind != "reply":
            if small.kind == "error" and small.report and small.report.kind == "frag_needed":
                return self._from_error(size, small)
            return self._result(size, "no_reply")
        # Silent loss of big packets only: bracket the largest size that passes.
        good, bad = SMALL_SIZE, size
        for _ in range(steps):
            if bad - good <= 1:
                break
            middle = (good + bad) // 2
            step = await self._try(middle, timeout, 1)
            if step.kind == "reply":
                good = middle
            elif step.kind in ("error", "local"):
                return self._from_error(size, step)
            else:
                bad = middle
        largest, lost = good + IP_ICMP_HEADERS, bad + IP_ICMP_HEADERS
        return self._result(size, "black_hole", mtu=largest, largest_ok=largest,
                            smallest_lost=lost)

    def _from_error(self, size: int, answer: _Answer) -> PmtuResult:
        report = answer.report
        if answer.kind == "local":
            return self._result(size, "local_mtu", mtu=report.mtu if report else None)
        assert report is not None
        if report.kind == "frag_needed":
            return self._result(size, "frag_needed", mtu=report.mtu, reporter=report.offender)
        # Another ICMP error (unreachable, prohibited): the host is not reachable at all.
        return self._result(size, "no_reply", reporter=report.offender)

    async def _try(self, size: int, timeout: float, attempts: int) -> _Answer:
        answer = _Answer("timeout")
        for _ in range(attempts):
            self.probes += 1
            answer = await self.sock.echo(self.address, size, timeout)
            if answer.kind != "timeout":
                return answer
        return answer


def _echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = _payload(size)
    header = _ECHO.pack(8, 0, 0, ident, seq)
    return header[:2] + struct.pack("!H", checksum(header + payload)) + header[4:] + payload


@functools.lru_cache(maxsize=32)
def _payload(size: int) -> bytes:
    """The echo's filler, the same for every probe of a size (a test run sends thousands)."""
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def _open(mode: str, ident: int) -> tuple[socket.socket, str]:
    sock: socket.socket | None = None
    chosen = ""
    if mode in ("auto", "raw"):
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            chosen = "raw"
            # Only our echo replies as data (errors come through the error queue): every
            # raw ICMP socket gets a copy of every packet, and in a test run of a thousand
            # sites the others' replies filled the buffer until ours were dropped.
            blocked = 0xFFFFFFFF & ~(1 << 0)
            sock.setsockopt(sockopts.SOL_RAW, sockopts.ICMP_FILTER, struct.pack("@I", blocked))
            icmp_filter.attach_program(sock, icmp_filter.echo_replies_program(ident))
        except PermissionError:
            if mode == "raw":
                raise PmtuError("a raw ICMP socket needs root or CAP_NET_RAW") from None
    if sock is None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
            chosen = "dgram"
        except OSError:
            ranges = _ping_group_range()
            raise PmtuError(
                "the path MTU check needs an ICMP socket: root or CAP_NET_RAW for a raw one, "
                f"or a group within net.ipv4.ping_group_range (now {ranges!r}, gid "
                f"{os.getgid()}) for an unprivileged one"
            ) from None
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, sockopts.IP_MTU_DISCOVER, sockopts.IP_PMTUDISC_PROBE)
        sock.setsockopt(socket.IPPROTO_IP, sockopts.IP_RECVERR, 1)
        # Shared by a test run's probes: a thousand 1500-byte replies may arrive at once,
        # five times what the default buffer holds (the pinger's engine sizes its own so).
        sockopts.set_receive_buffer(sock, _RECV_BUFFER)
    except OSError:
        sock.close()
        raise
    return sock, chosen


def _ping_group_range() -> str:
    try:
        return " ".join(Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except OSError:
        return "unknown"
