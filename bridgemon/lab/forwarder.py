"""The lab's forwarder process: ``python -m bridgemon.lab.forwarder --name N ...``.

It owns the lab: takes the lab's lock, cleans leftovers of a killed run, builds the
namespace and both TUN devices (:mod:`bridgemon.lab.netsetup`), then copies packets
between the TUNs until told to stop, and tears everything down on the way out.

Host → lab packets go through the impairment rules (:mod:`bridgemon.lab.impair`);
lab → host packets are forwarded at once unless a rule limits the rate back from that
site (``return_rate_bps``), so a configured loss or delay is exactly the echo loss or
the RTT increase a prober sees. A packet larger than a rule's MTU is answered with ICMP
"fragmentation needed" from the lab-side address (the "router"), dropped silently (an
MTU black hole), or fragmented when it does not carry DF.

Why a plain ``select.select`` loop and not asyncio (or threads): the release of delayed
packets must be sub-millisecond accurate. epoll (asyncio's selector) takes its timeout
in whole milliseconds, so asyncio timers fire up to ~1 ms late; ``select()`` takes a
``timeval`` in microseconds, and with the timer slack lowered to 1 ns via ``prctl`` it
wakes some 50-200 µs late on a VM. So the loop wakes early and busy-waits the last
stretch (adapted to the observed wake-up lateness, 0.1-2 ms): releases land within a
few µs of their due time (``status()["release_lateness_us"]`` reports it). The process
runs at SCHED_FIFO 1 so that a busy daemon under test cannot delay its wake-ups by a
scheduler tick. One thread also means no GIL hand-offs (5 ms switch interval) in the
packet path; a separate process means the daemon under test never shares our GIL.

Protocol of the control socket: see :mod:`bridgemon.lab.control`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

from bridgemon.lab import impair
from bridgemon.lab.netsetup import (
    DEFAULT_HOST_ADDR,
    DEFAULT_LAB_ADDR,
    DEFAULT_NET,
    LabError,
    LabSpec,
    cleanup_stale,
    open_lock,
    setup,
    teardown,
    try_lock,
    write_state,
)

#: Busy-wait the last stretch before a release instead of sleeping through it: select()
#: wake-ups come tens to hundreds of µs late (more in a VM), a spin is exact. The stretch
#: adapts to the wake-up lateness observed on this machine (its p95 plus a margin),
#: within these bounds; a fixed large value would burn a core at high packet rates.
SPIN_MIN_S = 0.0001
SPIN_MAX_S = 0.002
#: Longest select() sleep, so parent death and stop requests are noticed promptly.
MAX_SLEEP_S = 0.25
#: Packets read from one TUN per wake-up before looking at the timers again.
READ_BATCH = 64
#: Upper bound on delayed packets held (a 60 s delay at ~3k pps is far below it).
QUEUE_MAX = 500_000
_PR_SET_TIMERSLACK = 29


def _lower_timer_slack() -> None:
    # The default 50 µs timer slack lets the kernel coalesce our wake-ups that late.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)


def _realtime_priority() -> None:
    """Run at the lowest real-time priority (SCHED_FIFO 1), else at nice -10.

    With normal scheduling, a busy process on a 2-core machine (the daemon under test, a
    load generator) delays our wake-ups by up to a scheduler tick (4 ms): measured p99
    release lateness ~4 ms at 3k pps. At FIFO 1 it is ~20-200 µs. Our only busy-waiting
    is bounded (SPIN_MAX_S per release) and the kernel's RT throttling still reserves 5 %
    for everyone else. RESET_ON_FORK: the `ip` commands run at teardown stay normal.
    Set BRIDGEMON_LAB_NO_RT=1 to stay at normal priority.
    """
    try:
        if os.environ.get("BRIDGEMON_LAB_NO_RT"):  # escape hatch if RT misbehaves somewhere
            raise OSError
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    except (OSError, AttributeError):
        with contextlib.suppress(OSError):
            os.nice(-10)


class _Client:
    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""


class Forwarder:
    """Packet pump plus control server, all in one thread."""

    def __init__(
        self,
        spec: LabSpec,
        host_fd: int,
        lab_fd: int,
        control: socket.socket,
        *,
        parent_pid: int = 0,
        seed: int | None = None,
    ) -> None:
        self.spec = spec
        self.host_fd = host_fd
        self.lab_fd = lab_fd
        self.control = control
        self.parent_pid = parent_pid
        self.rng = random.Random(seed)
        self.host_addr = socket.inet_aton(spec.host_addr)
        self.router_addr = socket.inet_aton(spec.lab_addr)
        self.rules = impair.RuleTable()
        self.return_shaping = False
        # Delayed packets, each with the TUN it leaves by: (due, order, fd, packet).
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        self.clients: dict[int, _Client] = {}
        self.stopping = False
        self.stop_reason = ""
        self.started = time.time()
        self.to_lab: dict[str, int] = {
            "received": 0,
            "forwarded": 0,
            "delayed": 0,
            "dropped_down": 0,
            "dropped_filter": 0,
            "dropped_loss": 0,
            "dropped_rate": 0,
            "dropped_mtu": 0,
            "icmp_mtu": 0,
            "fragments": 0,
            "dropped_queue_full": 0,
            "dropped_other": 0,
            "write_errors": 0,
            "bytes": 0,
            "max_queued": 0,
        }
        self.to_host: dict[str, int] = {
            "received": 0,
            "forwarded": 0,
            "delayed": 0,
            "dropped_rate": 0,
            "dropped_queue_full": 0,
            "dropped_other": 0,
            "write_errors": 0,
            "bytes": 0,
        }
        # Release lateness of delayed packets, µs: the forwarder's own accuracy figure.
        self.lateness_us: deque[float] = deque(maxlen=4096)
        # How late select() wakes up for a timer, seconds; drives the spin stretch.
        self.wake_late: deque[float] = deque(maxlen=256)
        self.spin_s = 0.0003
        self._wake_samples = 0
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ------------------------------------------------------------------ packet path

    def _pump_host(self) -> None:
        """Read host → lab packets, apply the rules, forward, delay or drop."""
        host_fd = self.host_fd
        c = self.to_lab
        lookup = self.rules.lookup
        rng = self.rng
        have_rules = len(self.rules) > 0
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(host_fd, 65536)
            except BlockingIOError:
                return
            c["received"] += 1
            c["bytes"] += len(pkt)
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                c["dropped_other"] += 1  # the lab is IPv4 only
                continue
            rule = lookup(pkt[16:20]) if have_rules else None
            if rule is None:
                self._to_lab(pkt)
                continue
            now = time.monotonic()
            kind, delay = impair.decide(rule, pkt, rng, now)
            if kind == impair.FRAGMENT:
                for part in impair.fragment(pkt, rule.imp.mtu):
                    c["fragments"] += 1
                    part_kind, part_delay = impair.after_mtu(rule, len(part), rng, now)
                    self._dispatch(part_kind, part_delay, part, now)
            elif kind == impair.ICMP_MTU:
                c["icmp_mtu"] += 1
                try:
                    os.write(self.host_fd, impair.frag_needed(pkt, rule.imp.mtu,
                                                              self.router_addr))
                except OSError:
                    c["write_errors"] += 1
            else:
                self._dispatch(kind, delay, pkt, now)

    def _dispatch(self, kind: str, delay: float, pkt: bytes, now: float) -> None:
        c = self.to_lab
        if kind == impair.DELAY:
            self._hold(pkt, now + delay, self.lab_fd, c)
        elif kind == impair.FORWARD:
            self._to_lab(pkt)
        else:
            c["dropped_" + kind] += 1

    def _to_lab(self, pkt: bytes) -> None:
        try:
            os.write(self.lab_fd, pkt)
            self.to_lab["forwarded"] += 1
        except OSError:
            self.to_lab["write_errors"] += 1

    def _hold(self, pkt: bytes, due: float, fd: int, c: dict[str, int]) -> None:
        if len(self.heap) >= QUEUE_MAX:
            c["dropped_queue_full"] += 1
            return
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, fd, pkt))
        c["delayed"] += 1
        if len(self.heap) > self.to_lab["max_queued"]:
            self.to_lab["max_queued"] = len(self.heap)

    def _pump_lab(self) -> None:
        """Lab → host: forward at once (impairments act toward the site only)."""
        lab_fd, host_fd = self.lab_fd, self.host_fd
        host_addr = self.host_addr
        c = self.to_host
        for _ in range(READ_BATCH):
            try:
                pkt = os.read(lab_fd, 65536)
            except BlockingIOError:
                return
            c["received"] += 1
            c["bytes"] += len(pkt)
            # Defence in depth for "lab traffic never leaves this machine": the host gets
            # only packets addressed to its own lab-side address, so nothing from the
            # namespace can be forwarded onward even on a host with ip_forward=1.
            if len(pkt) < 20 or pkt[0] >> 4 != 4 or pkt[16:20] != host_addr:
                c["dropped_other"] += 1
                continue
            if self.return_shaping:
                rule = self.rules.lookup(pkt[12:16])
                if rule is not None:
                    now = time.monotonic()
                    kind, delay = impair.decide_return(rule, len(pkt), now)
                    if kind == impair.DELAY:
                        self._hold(pkt, now + delay, host_fd, c)
                        continue
                    if kind == impair.DROP_RATE:
                        c["dropped_rate"] += 1
                        continue
            try:
                os.write(host_fd, pkt)
                c["forwarded"] += 1
            except OSError:
                c["write_errors"] += 1

    def _release_due(self) -> None:
        heap = self.heap
        now = time.monotonic()
        # Spin over the last stretch: cheaper in accuracy than another select() wake-up.
        if heap and now < heap[0][0] <= now + self.spin_s:
            due = heap[0][0]
            while now < due:
                now = time.monotonic()
        while heap and heap[0][0] <= now:
            due, _, fd, pkt = heapq.heappop(heap)
            self.lateness_us.append((time.monotonic() - due) * 1e6)
            c = self.to_lab if fd == self.lab_fd else self.to_host
            try:
                os.write(fd, pkt)
                c["forwarded"] += 1
            except OSError:
                c["write_errors"] += 1

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        gc.freeze()  # setup objects need no more scanning: fewer, shorter GC pauses
        while not self.stopping:
            self._release_due()
            timed = False
            if self.heap:
                wake_at = self.heap[0][0] - self.spin_s
                timeout = wake_at - time.monotonic()
                if timeout < MAX_SLEEP_S:
                    timed = True
                else:
                    timeout = MAX_SLEEP_S
                timeout = max(0.0, timeout)
            else:
                timeout = MAX_SLEEP_S
            rfds = [self.host_fd, self.lab_fd, self.wake_r, self.control.fileno(), *self.clients]
            ready, _, _ = select.select(rfds, [], [], timeout)
            if timed and not ready and timeout > 0.0:
                self._note_wake(time.monotonic() - wake_at)
            # Packets first: the control channel can wait a few µs.
            if self.lab_fd in ready:
                self._pump_lab()
            if self.host_fd in ready:
                self._pump_host()
            if not ready:
                self._housekeeping()
                continue
            for fd in ready:
                if fd == self.control.fileno():
                    self._accept()
                elif fd in self.clients:
                    self._serve(fd)
                elif fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
            self._housekeeping()

    def _note_wake(self, late: float) -> None:
        self.wake_late.append(late)
        self._wake_samples += 1
        if self._wake_samples % 32 == 0 and len(self.wake_late) >= 32:
            ordered = sorted(self.wake_late)
            p95 = ordered[int(0.95 * (len(ordered) - 1))]
            self.spin_s = min(SPIN_MAX_S, max(SPIN_MIN_S, 1.25 * p95 + 0.00005))

    def _housekeeping(self) -> None:
        if self.parent_pid and os.getppid() != self.parent_pid:
            self.stop("parent process exited")

    def stop(self, reason: str) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_reason = reason
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    # ------------------------------------------------------------------ control

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            sock, _ = self.control.accept()
            sock.setblocking(False)
            self.clients[sock.fileno()] = _Client(sock)

    def _drop_client(self, fd: int) -> None:
        client = self.clients.pop(fd, None)
        if client is not None:
            client.sock.close()

    def _serve(self, fd: int) -> None:
        client = self.clients[fd]
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client(fd)
            return
        client.buf += data
        if len(client.buf) > 1 << 20:
            self._drop_client(fd)
            return
        while b"\n" in client.buf:
            line, client.buf = client.buf.split(b"\n", 1)
            if not line.strip():
                continue
            reply = self.handle_line(line)
            try:
                # Replies are small; a short blocking send keeps this simple.
                client.sock.setblocking(True)
                client.sock.settimeout(1.0)
                client.sock.sendall(json.dumps(reply).encode() + b"\n")
                client.sock.setblocking(False)
            except OSError:
                self._drop_client(fd)
                return

    def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            return {"ok": True, **self.handle(req)}
        except ValueError as exc:
            return {"ok": False, "kind": "value", "error": str(exc)}
        except Exception as exc:  # keep the lab alive whatever a client sends
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"pid": os.getpid(), "name": self.spec.name}
        if cmd == "set":
            net = impair.parse_target(str(req.get("target", "")))
            fields = {k: v for k, v in req.items() if k not in ("cmd", "target")}
            rule = self.rules.set(net, impair.Impairment.from_dict(fields))
            self.return_shaping = self.rules.shapes_return
            return {"impairment": rule.to_dict()}
        if cmd == "clear":
            target = req.get("target")
            which = impair.parse_target(str(target)) if target else None
            cleared = self.rules.clear(which)
            self.return_shaping = self.rules.shapes_return
            return {"cleared": cleared}
        if cmd == "status":
            return {"status": self.status()}
        if cmd == "shutdown":
            self.stop("shutdown requested")
            return {"stopping": True}
        raise ValueError(f"unknown command {cmd!r} (ping, set, clear, status, shutdown)")

    def status(self) -> dict[str, Any]:
        late = sorted(self.lateness_us)

        def pct(q: float) -> float | None:
            return round(late[min(len(late) - 1, int(q * len(late)))], 1) if late else None

        return {
            **self.spec.to_dict(),
            "pid": os.getpid(),
            "netns": self.spec.netns,
            "host_dev": self.spec.host_dev,
            "lab_dev": self.spec.lab_dev,
            "socket": str(self.spec.socket_path),
            "uptime_s": round(time.time() - self.started, 3),
            "impairments": [r.to_dict() for r in self.rules.rules()],
            "counters": {
                "to_lab": {**self.to_lab, "queued": len(self.heap)},
                "to_host": dict(self.to_host),
            },
            "release_lateness_us": {
                "samples": len(late),
                "p50": pct(0.5),
                "p99": pct(0.99),
                "max": round(late[-1], 1) if late else None,
            },
            "spin_us": round(self.spin_s * 1e6, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridgemon.lab.forwarder",
        description="Run a bridgemon lab (namespace + TUN forwarder) until stopped.",
    )
    parser.add_argument("--name", default="bmlab")
    parser.add_argument("--net", default=DEFAULT_NET)
    parser.add_argument("--host-addr", default=DEFAULT_HOST_ADDR)
    parser.add_argument("--lab-addr", default=DEFAULT_LAB_ADDR)
    parser.add_argument(
        "--lock-fd",
        type=int,
        default=-1,
        help="an already-locked lock file descriptor handed over by Lab",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=0,
        help="tear down when this parent process exits (0: never)",
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    def ready(line: str) -> None:
        # The starter waits for exactly one line on stdout; then stdout goes quiet.
        with contextlib.suppress(OSError):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    try:
        spec = LabSpec(
            name=args.name, net=args.net, host_addr=args.host_addr, lab_addr=args.lab_addr
        )
        lock_fd = args.lock_fd
        if lock_fd < 0:
            lock_fd = open_lock(spec)
            if not try_lock(lock_fd):
                raise LabError(f"lab {spec.name!r} is already running")
        os.set_inheritable(lock_fd, False)  # servers spawned later must not hold it
        cleanup_stale(spec)
        host_fd, lab_fd = setup(spec)
    except (LabError, ValueError, OSError) as exc:
        print(f"bridgemon lab: {exc}", file=sys.stderr)
        ready("ERROR " + json.dumps(str(exc)))
        return 1

    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            spec.socket_path.unlink()
        control.bind(str(spec.socket_path))
        os.chmod(spec.socket_path, 0o600)
        control.listen(16)
        control.setblocking(False)
        fwd = Forwarder(spec, host_fd, lab_fd, control, parent_pid=args.parent_pid, seed=args.seed)
        signal.set_wakeup_fd(fwd.wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, _f: fwd.stop(f"signal {signal.Signals(s).name}"))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        _lower_timer_slack()
        _realtime_priority()
        write_state(
            spec,
            pid=os.getpid(),
            socket=str(spec.socket_path),
            started_at=time.time(),
            parent_pid=args.parent_pid,
        )
        ready("READY " + json.dumps({"pid": os.getpid(), "socket": str(spec.socket_path)}))
        print(f"bridgemon lab {spec.name}: up, pid {os.getpid()}", file=sys.stderr)
        fwd.run()
        print(f"bridgemon lab {spec.name}: stopping ({fwd.stop_reason})", file=sys.stderr)
    except Exception as exc:
        print(f"bridgemon lab {spec.name}: forwarder failed: {exc!r}", file=sys.stderr)
        ready("ERROR " + json.dumps(str(exc)))
        return 1
    finally:
        # Closing the TUN fds makes both devices (and the host route) vanish.
        for fd in (host_fd, lab_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        control.close()
        try:
            teardown(spec)
        except Exception as exc:  # pragma: no cover - best effort on the way out
            with contextlib.suppress(OSError):
                print(f"bridgemon lab {spec.name}: teardown: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
