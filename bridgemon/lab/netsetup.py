"""Plumbing of the lab: names, paths, TUN devices, the namespace, setup and teardown.

Topology of a lab named ``N`` (defaults shown)::

    host namespace                                   namespace N
    ──────────────                                   ───────────
    198.18.0.0/16 ─route─> N-h (TUN) ══ forwarder ══ N-l (TUN) ── local 198.18.0.0/16 dev lo
    src 198.19.255.254                               198.19.255.253, route back to .254

Every address of the range is *local* in the namespace (``ip route add local … dev lo``),
so the namespace's kernel answers ping on all of them and a server bound to 0.0.0.0 there
answers on all of them. Both TUN devices are opened by the forwarder process without
TUNSETPERSIST, so they vanish by themselves when it exits, however it exits.

A guard route ``unreachable <range> metric 4242+hash(name)`` is installed too: if the forwarder dies
and its TUN route vanishes, traffic for the range hits the guard instead of the host's
default route, so lab addresses can never leak onto a real network. Teardown removes it.

Files live in the run directory (``/run/bridgemon-lab`` or ``$BRIDGEMON_LAB_DIR``):
``N.lock`` (flock held by the forwarder for the lab's life), ``N.json`` (state, for
attach), ``N.sock`` (control socket), ``N.log`` (forwarder's stderr).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_NAME = "bmlab"
DEFAULT_NET = "198.18.0.0/16"
DEFAULT_HOST_ADDR = "198.19.255.254"
DEFAULT_LAB_ADDR = "198.19.255.253"
#: Metrics of the unreachable guard routes: GUARD_METRIC + a hash of the lab name, so a
#: lab only ever deletes its own guard, never the guard of a live lab on the same range.
GUARD_METRIC = 4242
GUARD_METRIC_SPAN = 10_000
#: Everything the lab may address must sit inside the benchmarking range (RFC 2544).
BENCH_RANGE = ipaddress.IPv4Network("198.18.0.0/15")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,12}$")

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


class LabError(RuntimeError):
    """The lab cannot be set up, reached or torn down; the message says why and what to do."""


class RangeBusy(LabError):
    """Another lab routes this lab's range; it may be gone soon (a test run finishing)."""


def run_dir() -> Path:
    return Path(os.environ.get("BRIDGEMON_LAB_DIR", "/run/bridgemon-lab"))


def check_name(name: str) -> str:
    # Device names are limited to 15 bytes by the kernel and get a 2-byte suffix.
    if not _NAME_RE.match(name):
        raise LabError(
            f"lab name {name!r} is invalid: use 1-13 characters a-z, 0-9, _ "
            "(starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class LabSpec:
    """Names and addresses of one lab; also the state file's content (plus pid etc.)."""

    name: str = DEFAULT_NAME
    net: str = DEFAULT_NET
    host_addr: str = DEFAULT_HOST_ADDR
    lab_addr: str = DEFAULT_LAB_ADDR

    def __post_init__(self) -> None:
        check_name(self.name)
        try:
            net = ipaddress.IPv4Network(self.net)
            host = ipaddress.IPv4Address(self.host_addr)
            lab = ipaddress.IPv4Address(self.lab_addr)
        except ValueError as exc:
            raise LabError(f"lab addresses: {exc}") from None
        # The hard rule: the lab only ever routes benchmarking-range addresses.
        for what, value in (("net", net), ("host_addr", host), ("lab_addr", lab)):
            inside = (
                value.subnet_of(BENCH_RANGE)
                if isinstance(value, ipaddress.IPv4Network)
                else value in BENCH_RANGE
            )
            if not inside:
                raise LabError(f"lab {what} {value} must lie inside {BENCH_RANGE}")
        if host in net or lab in net or host == lab:
            raise LabError(
                f"host_addr {host} and lab_addr {lab} must differ and lie outside net {net}"
            )

    @property
    def netns(self) -> str:
        return self.name

    @property
    def host_dev(self) -> str:
        return f"{self.name}-h"

    @property
    def lab_dev(self) -> str:
        return f"{self.name}-l"

    @property
    def socket_path(self) -> Path:
        return run_dir() / f"{self.name}.sock"

    @property
    def state_path(self) -> Path:
        return run_dir() / f"{self.name}.json"

    @property
    def lock_path(self) -> Path:
        return run_dir() / f"{self.name}.lock"

    @property
    def log_path(self) -> Path:
        return run_dir() / f"{self.name}.log"

    @property
    def guard_metric(self) -> int:
        return GUARD_METRIC + zlib.crc32(self.name.encode()) % GUARD_METRIC_SPAN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_guard_route(line: str) -> bool:
    """Whether an `ip -o route` line is some lab's unreachable guard route."""
    m = re.search(r"\bmetric (\d+)", line)
    return (
        line.lstrip().startswith("unreachable")
        and m is not None
        and GUARD_METRIC <= int(m.group(1)) < GUARD_METRIC + GUARD_METRIC_SPAN
    )


# ---------------------------------------------------------------------------- commands


def run(argv: list[str], *, input: str | None = None, check: bool = True) -> str:
    """Run a command, return stdout; on failure raise LabError with its stderr."""
    try:
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise LabError(f"command not found: {argv[0]} (install iproute2)") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` failed: {msg}")
    return proc.stdout


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def ip_batch(lines: list[str], *, ns: str | None = None) -> None:
    # One `ip -batch` process instead of one per command: setup stays ~50 ms.
    run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def link_exists(dev: str, ns: str | None = None) -> bool:
    return bool(ip("-o", "link", "show", "dev", dev, ns=ns, check=False).strip())


def write_sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w") as fh:
        fh.write(value)


# ---------------------------------------------------------------------------- TUN


def tun_open(name: str) -> int:
    """Create a non-persistent TUN device (IFF_TUN | IFF_NO_PI); return its fd.

    The device lives as long as the fd is open, which is what makes the lab crash-safe.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        raise LabError(f"cannot create TUN device {name!r}: {exc.strerror}") from None
    os.set_blocking(fd, False)
    return fd


# ---------------------------------------------------------------------------- availability

_available: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """Whether this machine can run the lab, and if not, what is missing.

    It really tries (a TUN device, a namespace), because a container can have
    /dev/net/tun and `ip` yet lack the capabilities to use them.
    """
    global _available
    if _available is None:
        _available = _probe()
    return _available


def _probe() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"the lab needs Linux network namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return False, (
            f"the lab needs root (euid is {os.geteuid()}): it creates a network namespace "
            "and TUN devices"
        )
    if not os.path.exists("/dev/net/tun"):
        return False, "/dev/net/tun is missing (load the tun module or pass the device in)"
    if shutil.which("ip") is None:
        return False, "the `ip` command (iproute2) is not installed"
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH22x", b"bmprobe%d", IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        finally:
            os.close(fd)
    except OSError as exc:
        return False, f"cannot create a TUN device: {exc.strerror} (needs CAP_NET_ADMIN)"
    probe = f"bmprobe{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except LabError as exc:
        return False, f"cannot create a network namespace: {exc}"
    finally:
        ip("netns", "del", probe, check=False)
    return True, "ok"


# ---------------------------------------------------------------------------- locking


def open_lock(spec: LabSpec) -> int:
    """Open (creating) the lab's lock file; the caller flocks it."""
    run_dir().mkdir(parents=True, exist_ok=True, mode=0o755)
    return os.open(spec.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_with_wait(spec: LabSpec, wait: float) -> int:
    """Take the lab's lock, waiting up to ``wait`` s for a running lab of that name to end.

    The lock is held by the forwarder for the lab's whole life, so holding it proves that
    no lab of this name is running and anything left of one is stale.
    """
    fd = open_lock(spec)
    deadline = time.monotonic() + wait
    while not try_lock(fd):
        if time.monotonic() >= deadline:
            os.close(fd)
            state = read_state(spec.name)
            pid = f" (forwarder pid {state['pid']})" if state else ""
            raise LabError(
                f"lab {spec.name!r} is already running{pid}; use Lab.attach({spec.name!r}) "
                f"or stop it with `bridgemon lab down --name {spec.name}`"
            )
        time.sleep(0.05)
    return fd


# ---------------------------------------------------------------------------- state


def read_state(name: str) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state(spec: LabSpec, **extra: Any) -> None:
    tmp = spec.state_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**spec.to_dict(), **extra}, indent=1))
    tmp.replace(spec.state_path)  # atomic, so attach never reads half a file


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------- setup


def check_conflicts(spec: LabSpec) -> None:
    """Refuse to start over another lab (or anything else) that routes the same range."""
    own_devs = {spec.host_dev, spec.lab_dev}
    out = ip("-4", "-o", "route", "show", "exact", spec.net)
    for line in out.splitlines():
        if is_guard_route(line):
            continue  # a guard (ours, or a dead lab's): harmless, never carries traffic
        m = re.search(r"\bdev (\S+)", line)
        dev = m.group(1) if m else "?"
        if dev in own_devs:
            continue
        other = dev[:-2] if dev.endswith("-h") else None
        hint = (
            f"lab {other!r} uses it: stop it with `bridgemon lab down --name {other}`"
            if other
            else "remove that route"
        )
        message = (f"{spec.net} is already routed on this host ({line.strip()}); {hint}, "
                   "or give this lab another net")
        raise RangeBusy(message) if other else LabError(message)
    for addr in (spec.host_addr, spec.lab_addr):
        out = ip("-4", "-o", "addr", "show", "to", f"{addr}/32")
        if out.strip():
            dev = out.split()[1]
            raise LabError(
                f"address {addr} is already assigned on this host (dev {dev}); "
                "give this lab other host_addr/lab_addr"
            )


def setup(spec: LabSpec) -> tuple[int, int]:
    """Create the namespace and both TUNs and wire them; returns (host_fd, lab_fd).

    The caller must hold the lab's lock and must have cleaned stale leftovers.
    """
    check_conflicts(spec)
    host_fd = tun_open(spec.host_dev)
    lab_fd = tun_open(spec.lab_dev)
    try:
        ip("netns", "add", spec.netns)
        # IPv6 off before the links come up, else router solicitations and MLD reports
        # would be the first "traffic" through the lab. rp_filter off on our devices.
        write_sysctl(f"net/ipv6/conf/{spec.host_dev}/disable_ipv6", "1")
        write_sysctl(f"net/ipv4/conf/{spec.host_dev}/rp_filter", "0")
        ip("link", "set", spec.lab_dev, "netns", spec.netns)
        ns_sysctls = {
            f"net/ipv6/conf/{spec.lab_dev}/disable_ipv6": "1",
            "net/ipv4/conf/all/rp_filter": "0",
            "net/ipv4/conf/default/rp_filter": "0",
            "net/ipv4/conf/lo/rp_filter": "0",
            f"net/ipv4/conf/{spec.lab_dev}/rp_filter": "0",
            # Closed UDP ports must always answer "port unreachable" (not rate-limited),
            # so tests can tell a closed port from a filtered one deterministically.
            "net/ipv4/icmp_ratelimit": "0",
        }
        script = "; ".join(f"echo {v} > /proc/sys/{k}" for k, v in ns_sysctls.items())
        run(["ip", "netns", "exec", spec.netns, "sh", "-ec", script])
        ip_batch(
            [
                "link set lo up",
                f"link set {spec.lab_dev} txqueuelen 1000 up",
                f"addr add {spec.lab_addr}/32 dev {spec.lab_dev}",
                f"route add local {spec.net} dev lo",
                f"route add {spec.host_addr}/32 dev {spec.lab_dev} src {spec.lab_addr}",
            ],
            ns=spec.netns,
        )
        ip_batch(
            [
                f"route replace unreachable {spec.net} metric {spec.guard_metric}",
                f"link set {spec.host_dev} txqueuelen 1000 up",
                f"addr add {spec.host_addr}/32 dev {spec.host_dev}",
                f"route add {spec.net} dev {spec.host_dev} src {spec.host_addr}",
                f"route add {spec.lab_addr}/32 dev {spec.host_dev} src {spec.host_addr}",
            ]
        )
    except BaseException:
        os.close(host_fd)
        os.close(lab_fd)
        teardown(spec)
        raise
    return host_fd, lab_fd


# ---------------------------------------------------------------------------- teardown


def kill_netns_processes(ns: str, grace: float = 1.0) -> list[int]:
    """End every process still inside namespace ``ns`` (servers spawned into the lab)."""
    if not netns_exists(ns):
        return []
    pids = [int(p) for p in ip("netns", "pids", ns, check=False).split() if p.isdigit()]
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def teardown(spec: LabSpec, *, remove_files: bool = True) -> None:
    """Remove everything a lab of this spec may have left; tolerant of missing pieces.

    Safe on a stale lab (forwarder gone) and on a half-built one.
    """
    kill_netns_processes(spec.netns)
    if netns_exists(spec.netns):
        ip("netns", "del", spec.netns, check=False)
    # Our TUNs are non-persistent and vanish with the forwarder's fds; a leftover host
    # device means someone else still holds it, so delete it explicitly.
    if link_exists(spec.host_dev):
        ip("link", "del", spec.host_dev, check=False)
    ip("route", "del", "unreachable", spec.net, "metric", str(spec.guard_metric), check=False)
    if remove_files:
        for path in (spec.socket_path, spec.state_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def spec_from_state(name: str) -> LabSpec:
    """The spec recorded for ``name`` (so cleanup removes the right range), else defaults."""
    state = read_state(name) or {}
    try:
        return LabSpec(
            name=name,
            net=state.get("net", DEFAULT_NET),
            host_addr=state.get("host_addr", DEFAULT_HOST_ADDR),
            lab_addr=state.get("lab_addr", DEFAULT_LAB_ADDR),
        )
    except LabError:
        return LabSpec(name=name)


def cleanup_stale(spec: LabSpec) -> None:
    """Remove leftovers of a killed lab of this name (caller holds the lock)."""
    recorded = spec_from_state(spec.name)
    if recorded != spec:
        teardown(recorded)
    teardown(spec)
