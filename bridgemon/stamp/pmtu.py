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
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bridgemon.stamp import sockopts
from bridgemon.verdicts import State

Outcome = Literal["ok", "frag_needed", "black_hole", "local_mtu", "no_reply"]
IP_ICMP_HEADERS = 28
DEFAULT_SIZE = 1472
SMALL_SIZE = 56
MAX_SIZE = 65507
_ECHO = struct.Struct("!BBHHH")


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
) -> PmtuResult:
    """Check that ``size`` octets of ICMP payload with DF set reach ``address`` (IPv4).

    At most ``2 × attempts + search_steps`` echoes, each awaited ``timeout`` seconds.
    PmtuError when no ICMP socket can be opened or the arguments are wrong.
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
    prober = _Prober(str(ip), mode)
    try:
        return await prober.run(size, timeout, attempts, search_steps)
    finally:
        prober.close()


class _Prober:
    def __init__(self, address: str, mode: str) -> None:
        self.address = address
        self.sock, self.mode = _open(mode)
        self.loop = asyncio.get_running_loop()
        self.ident = int.from_bytes(os.urandom(2), "big")
        self.seq = 0
        self.probes = 0
        self.pending: dict[int, tuple[float, asyncio.Future[_Answer]]] = {}
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _result(self, size: int, outcome: Outcome, **fields: Any) -> PmtuResult:
        values: dict[str, Any] = {"mtu": None, "largest_ok": None, "smallest_lost": None,
                                  "reporter": None, "rtt": None, **fields}
        return PmtuResult(address=self.address, size=size, outcome=outcome,
                          mode=self.mode,  # type: ignore[arg-type]
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
            answer = await self._echo(size, timeout)
            if answer.kind != "timeout":
                return answer
        return answer

    async def _echo(self, size: int, timeout: float) -> _Answer:
        self.seq = (self.seq + 1) & 0xFFFF
        seq = self.seq
        packet = _echo_request(self.ident, seq, size)
        future: asyncio.Future[_Answer] = self.loop.create_future()
        self.pending[seq] = (time.monotonic(), future)
        self.probes += 1
        try:
            try:
                self.sock.sendto(packet, (self.address, 0))
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    return _Answer("local", report=self._local_error())
                raise PmtuError(f"cannot send an echo to {self.address}: {exc.strerror}") \
                    from None
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                return _Answer("timeout")
        finally:
            self.pending.pop(seq, None)

    def _local_error(self) -> sockopts.IcmpReport | None:
        with contextlib.suppress(OSError):
            _, anc, _, _ = self.sock.recvmsg(64, 512, socket.MSG_ERRQUEUE)
            return sockopts.parse_error_cmsg(anc)
        return None

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
        if not got:
            self._drain_errors()

    def _reply(self, data: bytes, src: Any) -> None:
        if self.mode == "raw":
            if len(data) < 20 or src[0] != self.address:
                return
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) < _ECHO.size:
            return
        kind, _code, _sum, ident, seq = _ECHO.unpack_from(data)
        if kind != 0 or (self.mode == "raw" and ident != self.ident):
            return
        self._settle(seq, lambda sent: _Answer("reply", rtt=time.monotonic() - sent))

    def _drain_errors(self) -> None:
        for _ in range(64):
            try:
                data, anc, _, dest = self.sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return
            report = sockopts.parse_error_cmsg(anc)
            if report is None:
                continue
            if self.mode == "raw" and not self._ours(data, dest):
                continue
            # The queued data is our echo as the router quoted it: its sequence number
            # says which probe the error is about.
            seq = _ECHO.unpack_from(data)[4] if len(data) >= _ECHO.size else None
            if seq is None and len(self.pending) == 1:
                seq = next(iter(self.pending))
            if seq is not None:
                kind = "local" if report.kind == "local_msgsize" else "error"
                self._settle(seq, lambda _sent, r=report, k=kind: _Answer(k, report=r))

    def _ours(self, data: bytes, dest: Any) -> bool:
        """Whether an error queued on a raw socket is about our echoes. The kernel hands
        every ICMP error to every unconnected raw ICMP socket, so a test run's probers
        (their sequence numbers all start at 1) see each other's: without this, a clean
        site took the "fragmentation needed" of another site's router as its own.
        ``dest`` is the quoted packet's destination, ``data`` our echo as quoted."""
        if not isinstance(dest, tuple) or not dest or dest[0] != self.address:
            return False
        return len(data) < _ECHO.size or _ECHO.unpack_from(data)[3] == self.ident

    def _settle(self, seq: int, make: Any) -> None:
        entry = self.pending.get(seq)
        if entry is not None and not entry[1].done():
            entry[1].set_result(make(entry[0]))


def _echo_request(ident: int, seq: int, size: int) -> bytes:
    payload = bytes(i & 0xFF for i in range(size))
    header = _ECHO.pack(8, 0, 0, ident, seq)
    return header[:2] + struct.pack("!H", _checksum(header + payload)) + header[4:] + payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _open(mode: str) -> tuple[socket.socket, str]:
    sock: socket.socket | None = None
    chosen = ""
    if mode in ("auto", "raw"):
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            chosen = "raw"
            # Only echo replies as data; errors come through the error queue.
            blocked = 0xFFFFFFFF & ~(1 << 0)
            sock.setsockopt(sockopts.SOL_RAW, sockopts.ICMP_FILTER, struct.pack("@I", blocked))
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
    except OSError:
        sock.close()
        raise
    return sock, chosen


def _ping_group_range() -> str:
    try:
        return " ".join(Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except OSError:
        return "unknown"
