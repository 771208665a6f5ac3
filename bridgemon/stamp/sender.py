"""The STAMP Session-Sender: one packet train over one UDP socket, paced on asyncio.

``await run_train(spec)`` sends ``spec``'s train to its reflector, collects the answers
and returns a :class:`TrainResult`. It never raises for what the network or the
reflector does (no route, no answer, garbage, a budget with no room): those come back
as figures, anomalies or ``error``. Bounds: the train's packets and bytes (checked by
:class:`TrainSpec`), the answers read (a reflector flooding us is cut off), every wait
(the resolver's, the budget's, the answers' after the last packet, and the whole train's).

Pacing. An idle event loop's timers fire up to a millisecond late (epoll counts whole
milliseconds); a busy one's fire about on time. So the pacer wakes a little *before* a
packet is due and sends everything due within that lead, the lead being the timer
lateness this train has observed (an average, between 0 and 1 ms, starting at 0.5):
send times then centre on the schedule in both cases, without spinning. Each send's
error is recorded and reported (:class:`Pacing`), so a sender that could not keep up is
visible rather than mistaken for a bad line.

Why a socket of its own per train (not one for all): its answers are told apart by the
kernel, the reflector sees a session per train (its own sequence numbers), and an
ICMP error (port unreachable, fragmentation needed) names the train it is about.
Answers are read unconnected so that an answer from another address is seen and
reported instead of silently dropped by the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import struct
import time
from array import array
from dataclasses import dataclass
from typing import Any

from bridgemon.probes.result import percentile
from bridgemon.stamp import sockopts
from bridgemon.stamp.analysis import Observations, analyse
from bridgemon.stamp.budget import BandwidthBudget, BudgetError
from bridgemon.stamp.clock import SHARED as CLOCK
from bridgemon.stamp.packets import MIN_REFLECTED, ns_from_timestamp, ntp_from_ns, pack_sender_into
from bridgemon.stamp.result import Anomalies, ErrorKind, Pacing, TrainResult
from bridgemon.stamp.train import IPV4_OVERHEAD, IPV6_OVERHEAD, TrainPlan, TrainSpec

#: The first lead of the pacer (half the event loop's timer granularity), and its bounds.
EARLY_S = 0.0005
EARLY_MAX_S = 0.001
#: Packets sent in one wake-up at most when the loop fell behind, so one late train
#: cannot hold the loop for long; the rest go on the next turn.
MAX_BURST = 32
#: Datagrams read per wake-up, for the same reason.
RECV_BATCH = 64
#: A TWAMP-light reflector may answer with its 41-octet header plus all our padding.
ANSWER_SLACK = 27
#: Stop listening once this many datagrams per packet sent arrived (plus a margin).
FLOOD_FACTOR = 4
FLOOD_MARGIN = 256
RESOLVE_TIMEOUT = 5.0
DEFAULT_BUDGET_WAIT = 60.0
_ANCILLARY = 256
_MSG_TRUNC = int(socket.MSG_TRUNC)  # a plain int: IntFlag arithmetic is slow per packet
_REFLECTED = struct.Struct("!IQHHQIQH")
_TTL_OFFSET = 40


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: ErrorKind
    en: str
    vi: str


async def run_train(
    spec: TrainSpec,
    *,
    budget: BandwidthBudget | None = None,
    budget_wait: float = DEFAULT_BUDGET_WAIT,
    source: str | None = None,
) -> TrainResult:
    """Send ``spec``'s train and measure the path; see the module docstring.

    ``budget``: the test run's shared bandwidth budget (the train waits up to
    ``budget_wait`` seconds for room). ``source``: the local address to send from.
    """
    started = time.time()
    try:
        address, family = await _resolve(spec)
    except _Fail as exc:
        return _failed(spec, None, started, exc.failure)
    overhead = IPV6_OVERHEAD if family == socket.AF_INET6 else IPV4_OVERHEAD
    plan = spec.plan(ipv6=family == socket.AF_INET6)
    reservation: contextlib.AbstractAsyncContextManager[None] = (
        budget.reserve(spec.rate_bps, wait=budget_wait) if budget is not None
        else contextlib.nullcontext()
    )  # fmt: skip
    try:
        async with reservation:
            train = _Train(spec, plan, address, family, overhead, source)
            try:
                return await train.run()
            finally:
                train.close()
    except BudgetError as exc:
        return _failed(spec, address, started, _Failure("budget", str(exc), exc.message_vi),
                       plan.packets)
    except _Fail as exc:
        return _failed(spec, address, started, exc.failure, plan.packets)


class _Fail(Exception):
    def __init__(self, failure: _Failure) -> None:
        super().__init__(failure.en)
        self.failure = failure


def _failed(
    spec: TrainSpec, address: str | None, started: float, failure: _Failure, planned: int = 0
) -> TrainResult:
    return TrainResult(
        spec=spec, address=address, started_at=started, elapsed=0.0, planned=planned, sent=0,
        figures=None, anomalies=Anomalies(), pacing=None, error=failure.en,
        error_vi=failure.vi, error_kind=failure.kind,
    )  # fmt: skip


async def _resolve(spec: TrainSpec) -> tuple[str, int]:
    host = spec.host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return str(ip), socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, spec.port, type=socket.SOCK_DGRAM)
    except TimeoutError:
        raise _Fail(_Failure(
            "resolve", f"resolving {host} took more than {RESOLVE_TIMEOUT:g} s",
            f"phân giải tên {host} quá {RESOLVE_TIMEOUT:g} s",
        )) from None  # fmt: skip
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise _Fail(_Failure(
            "resolve", f"cannot resolve {host}: {reason}",
            f"không phân giải được tên {host}: {reason}",
        )) from None  # fmt: skip
    family, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), int(family)


class _Train:
    """One train's socket, schedule and record. Single-use."""

    def __init__(
        self,
        spec: TrainSpec,
        plan: TrainPlan,
        address: str,
        family: int,
        overhead: int,
        source: str | None,
    ) -> None:
        self.spec = spec
        self.plan = plan
        self.overhead = overhead
        self.loop = asyncio.get_running_loop()
        self.peer = (address, spec.port)
        self.sock = _open_socket(spec, family, source, address)
        self.error_estimate = CLOCK.error_estimate()
        self.packet = bytearray(spec.size)
        self.bufsize = spec.size + ANSWER_SLACK + 1  # one more: detects oversize answers
        # The duplicate of packet 0 that tells a stateful reflector from a stateless one.
        self.twin = spec.reflector != "stateless"
        self.obs = Observations()
        self.tx_ntp: array[int] = array("Q")
        # Which transmissions have an answer, to end the wait as soon as all have.
        self.answered = bytearray(plan.packets + 1)
        self.answered_count = 0
        self.errors: array[float] = array("d")
        self.next_seq = 0
        self.t0 = 0.0
        self.early = EARLY_S
        self.wake_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.datagrams = 0
        self.flood_limit = FLOOD_FACTOR * (plan.packets + 1) + FLOOD_MARGIN
        self.reading = False
        self.first_send = self.last_send = 0.0
        # anomalies
        self.truncated = self.oversized = self.unmatched = self.foreign = 0
        self.foreign_source: str | None = None
        self.icmp: dict[str, int] = {}
        self.path_mtu: int | None = None
        self.send_errors = 0
        self.send_error: str | None = None
        self.flood = False

    # ------------------------------------------------------------------ life cycle

    async def run(self) -> TrainResult:
        started = time.time()
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self.reading = True
        self.t0 = self.loop.time() + 0.002
        self.wake_at = self.t0 - self.early
        self.timer = self.loop.call_at(self.wake_at, self._tick)
        deadline = self.spec.duration + self.spec.wait + 5.0
        try:
            async with asyncio.timeout(deadline):
                await self.done
        except TimeoutError:
            pass  # a stalled loop: report what was gathered rather than nothing
        finally:
            self._stop_reading()
            if self.timer is not None:
                self.timer.cancel()
        end = time.monotonic()
        sent = self.next_seq
        figures = analyse(
            self.obs, rate_bps=self.spec.rate_bps, wire_size=self.plan.wire_size,
            overhead=self.overhead, mode=self.spec.reflector,
        )  # fmt: skip
        return TrainResult(
            spec=self.spec, address=self.peer[0], started_at=started,
            elapsed=end - self.first_send if self.first_send else 0.0,
            planned=self.plan.packets, sent=sent, figures=figures, anomalies=self._anomalies(),
            pacing=self._pacing(),
        )  # fmt: skip

    def close(self) -> None:
        self._stop_reading()
        self.sock.close()

    def _stop_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # ------------------------------------------------------------------ sending

    def _tick(self) -> None:
        self.timer = None
        if self.done.done():
            return
        interval, t0, packets = self.plan.interval, self.t0, self.plan.packets
        now = self.loop.time()
        # Learn how late this loop's timers fire, and lead by that much.
        late = min(max(now - self.wake_at, 0.0), EARLY_MAX_S)
        self.early += (late - self.early) * 0.1
        horizon = now + self.early
        burst = 0
        while self.next_seq < packets and burst < MAX_BURST:
            due = t0 + self.next_seq * interval
            if due > horizon:
                break
            self._send(self.next_seq, due)
            if self.next_seq == 0 and self.twin:
                self._send(0, due, twin=True)
            self.next_seq += 1
            burst += 1
        if self.next_seq < packets:
            self.wake_at = t0 + self.next_seq * interval - self.early
            self.timer = self.loop.call_at(self.wake_at, self._tick)
        else:
            # Answers still on their way get ``wait`` seconds; all answered ends sooner.
            self.timer = self.loop.call_later(self.spec.wait, self._finish)
            self._check_complete()

    def _send(self, seq: int, due: float, *, twin: bool = False) -> None:
        now_ns = time.time_ns()
        ntp = ntp_from_ns(now_ns)
        if twin and ntp <= self.tx_ntp[-1]:
            ntp = self.tx_ntp[-1] + 1  # the two copies must be told apart by timestamp
        pack_sender_into(self.packet, seq, ntp, self.error_estimate)
        self.obs.tx_seq.append(seq)
        self.obs.tx_t1.append(now_ns)
        self.tx_ntp.append(ntp)
        sent_at = time.monotonic()
        try:
            self.sock.sendto(self.packet, self.peer)
        except OSError as exc:
            self._send_failed(exc)
        if not twin:
            self.errors.append(sent_at - due)
            if not self.first_send:
                self.first_send = sent_at
            self.last_send = sent_at

    def _send_failed(self, exc: OSError) -> None:
        self.send_errors += 1
        if exc.errno == errno.EMSGSIZE:
            with contextlib.suppress(OSError):
                mtu = self.sock.getsockopt(socket.IPPROTO_IP, sockopts.IP_MTU)
                self.path_mtu = mtu if self.path_mtu is None else min(self.path_mtu, mtu)
            self.icmp["local_msgsize"] = self.icmp.get("local_msgsize", 0) + 1
        if self.send_error is None:
            self.send_error = exc.strerror or str(exc)
        self._drain_errors()

    # ------------------------------------------------------------------ receiving

    def _on_readable(self) -> None:
        sock = self.sock
        got = 0
        failed = False
        for _ in range(RECV_BATCH):
            try:
                data, anc, flags, src = sock.recvmsg(self.bufsize, _ANCILLARY)
            except BlockingIOError:
                break
            except OSError:
                failed = True  # a queued ICMP error surfacing; its report is in the queue
                continue
            got += 1
            arrival = sockopts.kernel_time_ns(anc) or time.time_ns()
            self._handle(data, flags, src, arrival)
            if not self.reading:
                return
        if failed or not got:
            # Woken with nothing to read: the error queue raised EPOLLERR. Empty it, or
            # the loop would keep waking us.
            self._drain_errors()

    def _handle(self, data: bytes, flags: int, src: Any, arrival: int) -> None:
        self.datagrams += 1
        if self.datagrams > self.flood_limit:
            self.flood = True
            self._stop_reading()
            self._finish()
            return
        if (src[0], src[1]) != self.peer:
            self.foreign += 1
            if self.foreign_source is None:
                host = f"[{src[0]}]" if ":" in str(src[0]) else str(src[0])
                self.foreign_source = f"{host}:{src[1]}"
            return
        length = len(data)
        if flags & _MSG_TRUNC or length > self.spec.size + ANSWER_SLACK:
            self.oversized += 1
            return
        if length < MIN_REFLECTED:
            self.truncated += 1
            return
        rseq, t3, err, _ssid, t2, sseq, sts, _serr = _REFLECTED.unpack_from(data)
        k = self._transmission(sseq, sts)
        if k is None:
            self.unmatched += 1
            return
        ttl = data[_TTL_OFFSET] if length > _TTL_OFFSET else None
        self.obs.add_answer(
            k, rseq, ns_from_timestamp(t2, err), ns_from_timestamp(t3, err), arrival,
            length, ttl,
        )  # fmt: skip
        if not self.answered[k]:
            self.answered[k] = 1
            self.answered_count += 1
            self._check_complete()

    def _transmission(self, seq: int, timestamp: int) -> int | None:
        """Which packet sent an answer answers: number and exact timestamp must match."""
        tx = self.tx_ntp
        if seq == 0:
            for k in (0, 1) if self.twin else (0,):
                if k < len(tx) and tx[k] == timestamp:
                    return k
            return None
        k = seq + 1 if self.twin else seq
        return k if k < len(tx) and tx[k] == timestamp else None

    def _check_complete(self) -> None:
        if self.next_seq >= self.plan.packets and self.answered_count >= len(self.tx_ntp):
            self._finish()

    def _drain_errors(self) -> None:
        for _ in range(RECV_BATCH):
            try:
                _, anc, _, _ = self.sock.recvmsg(64, 512, socket.MSG_ERRQUEUE)
            except OSError:  # BlockingIOError included: the queue is empty
                return
            report = sockopts.parse_error_cmsg(anc)
            if report is None:
                continue
            self.icmp[report.kind] = self.icmp.get(report.kind, 0) + 1
            if report.mtu:
                self.path_mtu = report.mtu if self.path_mtu is None else min(
                    self.path_mtu, report.mtu)

    # ------------------------------------------------------------------ results

    def _anomalies(self) -> Anomalies:
        return Anomalies(
            truncated=self.truncated, oversized=self.oversized, unmatched=self.unmatched,
            foreign=self.foreign, foreign_source=self.foreign_source, icmp=dict(self.icmp),
            path_mtu=self.path_mtu, send_errors=self.send_errors, send_error=self.send_error,
            flood=self.flood,
        )  # fmt: skip

    def _pacing(self) -> Pacing | None:
        if not self.errors:
            return None
        ordered = sorted(self.errors)
        span = self.last_send - self.first_send
        sent = len(self.errors)
        return Pacing(
            error_p50=percentile(ordered, 0.5),
            error_p99=percentile(sorted(abs(e) for e in ordered), 0.99),
            error_max=max(abs(ordered[0]), abs(ordered[-1])),
            sent_bps=(sent - 1) * self.plan.wire_size * 8 / span if sent > 1 and span > 0
            else None,
        )  # fmt: skip


def _open_socket(spec: TrainSpec, family: int, source: str | None, address: str) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise _Fail(_Failure("socket", f"cannot open a UDP socket: {exc.strerror}",
                             f"không mở được socket UDP: {exc.strerror}")) from None
    try:
        sock.setblocking(False)
        tos = spec.dscp << 2
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, sockopts.IPV6_TCLASS, tos)
            sock.setsockopt(socket.IPPROTO_IPV6, sockopts.IPV6_MTU_DISCOVER,
                            sockopts.IPV6_PMTUDISC_DO)
            sock.setsockopt(socket.IPPROTO_IPV6, sockopts.IPV6_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, sockopts.IP_TOS, tos)
            # DF: a packet larger than the path MTU is an MTU problem to report, not
            # fragments that would hide it (video endpoints do not fragment either).
            sock.setsockopt(socket.IPPROTO_IP, sockopts.IP_MTU_DISCOVER, sockopts.IP_PMTUDISC_DO)
            sock.setsockopt(socket.IPPROTO_IP, sockopts.IP_RECVERR, 1)
        sock.setsockopt(socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS, 1)
        # Room for a burst of answers while the loop is busy with other trains.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.bind((source or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
    except OSError as exc:
        sock.close()
        where = f" from {source}" if source else ""
        raise _Fail(_Failure(
            "socket", f"cannot send to {address}{where}: {exc.strerror or exc}",
            f"không gửi được tới {address}{where}: {exc.strerror or exc}",
        )) from None  # fmt: skip
    return sock

