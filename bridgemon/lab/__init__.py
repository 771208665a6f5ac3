"""The lab: a userspace network emulator giving tests slow, lossy, jittery, dead and
port-filtered sites (tests and demos only, never production traffic).

A network namespace answers for a whole range (default ``198.18.0.0/16``, inside the
benchmarking range 198.18.0.0/15) and is joined to the host by two TUN devices with a
forwarder process between them that delays, drops and filters packets per destination
prefix. See :mod:`bridgemon.lab.netsetup` for the topology and
:mod:`bridgemon.lab.forwarder` for the packet path.

Usage::

    from bridgemon.lab import Lab
    with Lab(name="bmlab") as lab:
        lab.impair("198.18.1.2", delay_ms=40)
        lab.impair("198.18.2.0/24", loss=0.1)
        lab.impair("198.18.1.4", down=True)
        lab.impair("198.18.1.5", drop=["udp:5060"])
        lab.impair("198.18.1.6", rate_bps=1e6, return_rate_bps=512e3)  # a thin line
        lab.impair("198.18.1.7", mtu=1400)  # PPPoE/VPN; mtu_blackhole=True: no ICMP
        server = lab.spawn([sys.executable, "-m", "bridgemon.lab.servers",
                            "--tcp", "1720", "--sip", "5060", "--ready"])
        lab.clear("198.18.1.2"); lab.clear()
        print(lab.status())

Module map: ``impair`` (rules, pure), ``netsetup`` (namespace, TUN, setup/teardown),
``forwarder`` (the process), ``control`` (control-socket client), ``servers`` (TCP, UDP
echo and SIP responders to run inside), ``cli`` (``bridgemon lab ...``).

Only ever send to lab addresses while the lab is up: outside it nothing routes them
(during its life, and after a crash until cleanup, a guard route makes them unreachable).
The methods block for about a millisecond (a Unix-socket round trip); calling them from
async tests is fine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bridgemon.lab import control, impair, netsetup
from bridgemon.lab.impair import Impairment, parse_filter, parse_target
from bridgemon.lab.netsetup import (
    DEFAULT_HOST_ADDR,
    DEFAULT_LAB_ADDR,
    DEFAULT_NAME,
    DEFAULT_NET,
    LabError,
    LabSpec,
)

__all__ = [
    "DEFAULT_HOST_ADDR",
    "DEFAULT_LAB_ADDR",
    "DEFAULT_NAME",
    "DEFAULT_NET",
    "Impairment",
    "Lab",
    "LabError",
    "parse_filter",
]


def _is_our_forwarder(pid: int, name: str) -> bool:
    """Whether ``pid`` is a live (non-zombie) forwarder of lab ``name``.

    Checked before signalling a pid read from a state file: pids get reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return b"bridgemon.lab.forwarder" in cmdline and name.encode() in cmdline


class Lab:
    """Handle on one lab: start/stop it, or attach to a running one; steer impairments.

    ``Lab(...)`` only describes the lab; :meth:`start` (or ``with``) builds it. A lab
    started by this object is torn down by :meth:`stop` / leaving the ``with`` block;
    a handle from :meth:`attach` tears down only on an explicit :meth:`stop`.

    ``wait`` is how long :meth:`start` waits for another lab of the *same name* to go away
    (e.g. a parallel test worker) before failing. Labs of different names may run side by
    side only with disjoint ``net`` and distinct ``host_addr``/``lab_addr``.
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        *,
        net: str = DEFAULT_NET,
        host_addr: str = DEFAULT_HOST_ADDR,
        lab_addr: str = DEFAULT_LAB_ADDR,
        wait: float = 0.0,
        seed: int | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        self.spec = LabSpec(name=name, net=net, host_addr=host_addr, lab_addr=lab_addr)
        self.wait = wait
        self.seed = seed
        self.start_timeout = start_timeout
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = False
        self._spawned: list[subprocess.Popen[Any]] = []

    # ------------------------------------------------------------------ description

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def net(self) -> ipaddress.IPv4Network:
        """The range whose every address answers inside the lab."""
        return ipaddress.IPv4Network(self.spec.net)

    @property
    def host_addr(self) -> str:
        """Source address of host traffic into the lab (on the host-side TUN)."""
        return self.spec.host_addr

    @property
    def lab_addr(self) -> str:
        """The lab-side TUN's own address (inside the namespace)."""
        return self.spec.lab_addr

    @property
    def netns(self) -> str:
        return self.spec.netns

    @property
    def host_dev(self) -> str:
        return self.spec.host_dev

    @property
    def lab_dev(self) -> str:
        return self.spec.lab_dev

    @property
    def socket_path(self) -> Path:
        return self.spec.socket_path

    def __repr__(self) -> str:
        return f"Lab(name={self.name!r}, net={self.spec.net!r}, pid={self.pid})"

    # ------------------------------------------------------------------ life cycle

    @staticmethod
    def available() -> tuple[bool, str]:
        """``(True, "ok")`` if this machine can run the lab, else ``(False, why)``."""
        return netsetup.available()

    @classmethod
    def attach(cls, name: str = DEFAULT_NAME) -> Lab:
        """A handle on the running lab ``name``; LabError if there is none."""
        netsetup.check_name(name)
        state = netsetup.read_state(name)
        if state is None:
            raise LabError(
                f"no lab named {name!r} is running (no {netsetup.run_dir() / (name + '.json')}); "
                f"start one with `bridgemon lab up --name {name}`"
            )
        lab = cls(
            name,
            net=state.get("net", DEFAULT_NET),
            host_addr=state.get("host_addr", DEFAULT_HOST_ADDR),
            lab_addr=state.get("lab_addr", DEFAULT_LAB_ADDR),
        )
        try:
            reply = control.request(lab.socket_path, {"cmd": "ping"}, timeout=2.0)
        except LabError:
            raise LabError(
                f"lab {name!r} is not running (its forwarder, pid {state.get('pid')}, does "
                f"not answer); `bridgemon lab down --name {name}` removes its leftovers"
            ) from None
        lab.pid = int(reply["pid"])
        return lab

    @staticmethod
    def cleanup(name: str = DEFAULT_NAME) -> bool:
        """Remove leftovers of a dead lab ``name``; False if that lab is running."""
        return Lab._cleanup(netsetup.spec_from_state(netsetup.check_name(name)))

    @staticmethod
    def _cleanup(spec: LabSpec) -> bool:
        fd = netsetup.open_lock(spec)
        try:
            if not netsetup.try_lock(fd):
                return False
            netsetup.cleanup_stale(spec)
            return True
        finally:
            os.close(fd)

    def start(self, *, detach: bool = False) -> Lab:
        """Build the lab: namespace, TUNs, forwarder. Stale leftovers are removed first.

        With ``detach`` the forwarder outlives this process (``bridgemon lab up``);
        otherwise it tears the lab down by itself if this process dies.
        """
        if self._owner:
            raise LabError(f"lab {self.name!r} is already started by this handle")
        ok, reason = netsetup.available()
        if not ok:
            raise LabError(f"cannot run the lab: {reason}")
        lock_fd = netsetup.lock_with_wait(self.spec, self.wait)
        try:
            self._wait_for_range()
        except BaseException:
            os.close(lock_fd)
            raise
        try:
            self._proc, self.pid = self._launch(lock_fd, detach)
        finally:
            os.close(lock_fd)  # the forwarder holds the lock through its inherited fd
        self._owner = True
        return self

    def _wait_for_range(self) -> None:
        """With ``wait``, queue behind another lab using the same range, as for the name."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                netsetup.check_conflicts(self.spec)
                return
            except netsetup.RangeBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def _launch(self, lock_fd: int, detach: bool) -> tuple[subprocess.Popen[bytes], int]:
        spec = self.spec
        argv = [
            sys.executable, "-m", "bridgemon.lab.forwarder",
            "--name", spec.name, "--net", spec.net,
            "--host-addr", spec.host_addr, "--lab-addr", spec.lab_addr,
            "--lock-fd", str(lock_fd),
            "--parent-pid", "0" if detach else str(os.getpid()),
        ]  # fmt: skip
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        with open(spec.log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                pass_fds=(lock_fd,),
                # Own session: a Ctrl-C meant for the caller must not kill the lab under
                # it; the caller tears it down (or the forwarder notices it has died).
                start_new_session=True,
            )
        assert proc.stdout is not None
        line = b""
        deadline = time.monotonic() + self.start_timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
        proc.stdout.close()
        text = line.decode(errors="replace").strip()
        if text.startswith("READY "):
            return proc, int(json.loads(text[6:])["pid"])
        # Failed: collect the reason, make sure nothing is left half-built.
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if text.startswith("ERROR "):
            reason = json.loads(text[6:])
        else:
            tail = spec.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            reason = "forwarder did not become ready: " + (" | ".join(tail) or "no output")
        raise LabError(f"lab {spec.name!r}: {reason}")

    def stop(self, timeout: float = 10.0) -> None:
        """Tear the lab down: spawned servers, forwarder, namespace, devices, routes, files."""
        for proc in self._spawned:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._spawned:
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._spawned.clear()
        with contextlib.suppress(LabError, ValueError, OSError):
            control.request(self.socket_path, {"cmd": "shutdown"}, timeout=2.0)
        deadline = time.monotonic() + timeout
        if self._proc is not None:
            try:
                self._proc.wait(max(0.1, timeout))
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(2)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        elif self.pid is not None:
            while _is_our_forwarder(self.pid, self.name) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _is_our_forwarder(self.pid, self.name):
                os.kill(self.pid, signal.SIGKILL)
                time.sleep(0.1)
        self._proc = None
        self._owner = False
        # The forwarder tears down on its way out; this sweeps what a crash may have left.
        Lab._cleanup(self.spec)

    @property
    def running(self) -> bool:
        """Whether the forwarder answers on the control socket."""
        try:
            control.request(self.socket_path, {"cmd": "ping"}, timeout=2.0)
        except LabError:
            return False
        return True

    def __enter__(self) -> Lab:
        if not self._owner and self.pid is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owner:
            self.stop()

    # ------------------------------------------------------------------ impairments

    def impair(
        self,
        target: str,
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        down: bool = False,
        drop: Iterable[str] = (),
        rate_bps: float = 0.0,
        return_rate_bps: float = 0.0,
        queue_ms: float = impair.DEFAULT_QUEUE_MS,
        mtu: int = 0,
        mtu_blackhole: bool = False,
    ) -> dict[str, Any]:
        """Set (replace) the impairment of an address or prefix, host → lab direction
        (``return_rate_bps``: the rate limit of what comes back from it).

        The most specific prefix covering a packet's destination applies; rules don't
        merge. Returns the installed rule as the forwarder reports it. See
        :class:`Impairment` for the order in which they apply.
        """
        net = parse_target(target)  # validate here: the error then points at the caller
        if not net.overlaps(self.net):
            # Packets for it never reach the lab, so such a rule could only hide a typo.
            raise ValueError(f"target {target} is outside the lab's range {self.net}")
        imp = Impairment.build(
            delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss, down=down, drop=drop,
            rate_bps=rate_bps, return_rate_bps=return_rate_bps, queue_ms=queue_ms, mtu=mtu,
            mtu_blackhole=mtu_blackhole,
        )  # fmt: skip
        reply = control.request(
            self.socket_path, {"cmd": "set", "target": str(net), **imp.to_dict()}
        )
        rule: dict[str, Any] = reply["impairment"]
        return rule

    def clear(self, target: str | None = None) -> int:
        """Remove the impairment of exactly ``target``, or all of them; returns how many."""
        if target is not None:
            target = str(parse_target(target))
        reply = control.request(self.socket_path, {"cmd": "clear", "target": target})
        return int(reply["cleared"])

    def status(self) -> dict[str, Any]:
        """Names, addresses, impairments with per-rule counters, per-direction counters,
        and the release lateness of delayed packets (µs)."""
        reply = control.request(self.socket_path, {"cmd": "status"})
        status: dict[str, Any] = reply["status"]
        return status

    # ------------------------------------------------------------------ processes

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside the lab's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def spawn(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process (e.g. a server on 0.0.0.0) inside the namespace.

        It answers on every lab address. The lab terminates it on :meth:`stop`.
        """
        proc: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(argv), **popen_kwargs)
        self._spawned.append(proc)
        return proc

    def wait_port(self, host: str, port: int, timeout: float = 5.0) -> None:
        """Wait until a TCP server inside the lab accepts on ``host:port``."""
        if ipaddress.IPv4Address(host) not in self.net:
            raise ValueError(f"{host} is not a lab address (outside {self.net})")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise LabError(f"nothing accepts on {host}:{port} in the lab: {exc}") from None
                time.sleep(0.05)
