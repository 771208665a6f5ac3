"""Truth under load: reading the monitor must not change what it measures.

    sudo .venv/bin/python benchmarks/truth_under_load.py                  # A (3 repeats), then B
    sudo .venv/bin/python benchmarks/truth_under_load.py --sites 2000 --duration 60 --repeats 1
    sudo .venv/bin/python benchmarks/truth_under_load.py --only flood --json flood.json

Every target answers: all sites are on 127.0.0.0/8, so the kernel replies to every echo and
every site is healthy. Whatever the daemon says otherwise while it is being read is a lie
the reading caused. Two scenarios:

A. "national load" (``--only load``): ``bridgemon run`` watches a generated inventory of
   SITES loopback sites (5 echoes per site every INTERVAL) while, at the same time,
   - a real Prometheus (the Debian ``prometheus`` binary, temp storage, 127.0.0.1 only)
     scrapes /metrics every 15 s with a 10 s timeout (asking for gzip, as it always does);
   - API clients poll ``GET /api/v1/sites``, ``GET /api/v1/sites?select=under:d0`` and the
     status page ``GET /`` every 30 s, each request timed and sized;
   - fping, the CPU reference, pings as many 127.x targets in its own network namespace
     (``bm-ref-PID``, only ``lo`` up, so neither raw socket sees the other's replies), one
     fresh ``fping -C 5`` per interval with its echoes spread over 80 % of it.
   After a warm-up (the first full round, and at least one interval + 10 s) DURATION seconds
   are measured. Reported per repeat and as medians, each beside its goal:
   healthy sites judged anything but ready at any time in the window, from Prometheus
   (``max_over_time(bridgemon_site_state{state!="ready"}[W]) == 1``) and cross-checked with
   the sampled ``verdict`` of /api/v1/sites (goal 0 of N); answered echoes counted lost
   (per-site ``bridgemon_icmp_echoes_{sent,received}_total`` deltas, goal 0); Prometheus's
   own ``scrape_duration_seconds`` p99 and max (goal p99 < 0.3 s) beside the same figure for
   a static copy of the same exposition that the same Prometheus scrapes at the same time
   (job ``static_copy``: Prometheus's own floor for these samples here), samples per scrape and
   /metrics fetched once with and once without gzip (bytes on the wire, seconds); the worst
   event-loop lag (``bridgemon_event_loop_lag_seconds``, goal < 20 ms); receive drops
   (``bridgemon_pinger_receive_drops_total`` and the kernel's own count in /proc/net/raw)
   and stray replies; daemon peak RSS (goal < 250 MB); API and status-page latency; CPU
   per 1,000 echoes of the daemon (everything it did in the window, serving included)
   against fping's (goal ratio <= 1.0x).

B. "foreign flood" (``--only flood``; by default after A): the daemon watches the shipped
   ``config/sites.toml`` (260 loopback sites; copied to a temp dir, served on a free port
   with ``run --listen``) while, in the HOST namespace so the replies DO reach the daemon's
   raw socket, fping floods ~2,000 127.200.x.y targets unpaced (``-p 1 -i 0``, repeated
   bounded ``-c`` runs). Prometheus and the API clients read as in A. Reported: false
   losses (goal 0), stray replies the daemon saw, receive drops, sites judged not ready,
   and the flood's echoes per second.

Metrics that the daemon does not export (yet) print as "n/a (metric absent)". Traffic goes
only to 127.0.0.0/8; every child process is bounded in time and killed, the namespace
deleted and temp dirs removed in ``finally``, also on Ctrl-C or SIGTERM. Needs root (raw
ICMP sockets, network namespaces), fping, iproute2 and prometheus.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import ipaddress
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.inventory import loopback_address, national_inventory  # noqa: E402
from bridgemon.durations import parse_duration  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
SCRAPE_INTERVAL, SCRAPE_TIMEOUT = 15, 10
JOB = "bridgemon"
# Prometheus also scrapes, at the same time, a static copy of the daemon's own exposition
# served by a trivial server: its scrape_duration_seconds is Prometheus's floor for these
# bytes on this machine (parsing and storing every sample), what no exporter can beat.
REFERENCE_JOB = "static_copy"
STATES_NOT_READY = ("degraded", "not_ready", "parent_down", "unknown")

GOAL_SCRAPE_P99 = 0.3
GOAL_LOOP_LAG = 0.020
GOAL_RSS_MB = 250.0
GOAL_CPU_RATIO = 1.0

Row = dict[str, Any]


# -- safety: loopback only, every child accounted for ------------------------------------


def require_loopback(address: str) -> str:
    if ipaddress.ip_address(address) not in LOOPBACK:
        raise SystemExit(f"refusing to send traffic to {address}: not on 127.0.0.0/8")
    return address


def flood_address(index: int) -> str:
    """A distinct 127.200.0.0/14 address per index (never .0 or .255), apart from sites."""
    host = index % 250 + 1
    rest = index // 250
    return f"127.{200 + rest // 256}.{rest % 256}.{host}"


def check_config_loopback(value: object, where: str = "") -> None:
    """Every address or URL host in a parsed inventory must be on loopback."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_config_loopback(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_config_loopback(item, f"{where}[{index}]")
    elif isinstance(value, str):
        host: str | None = value
        if "://" in value:
            host = urllib.parse.urlsplit(value).hostname
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return
        if address not in LOOPBACK:
            raise SystemExit(f"refusing: {where} = {value!r} is not on 127.0.0.0/8")


_CHILDREN: list[subprocess.Popen[bytes]] = []
_CHILDREN_LOCK = threading.Lock()
STOP = threading.Event()


def spawn(command: list[str], *, log: Path, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child in its own session, its output to LOG, remembered for cleanup."""
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                   start_new_session=True)
    with _CHILDREN_LOCK:
        _CHILDREN.append(process)
    return process


def stop(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM, then SIGKILL after GRACE seconds; only this process, by its pid."""
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    except (ProcessLookupError, ChildProcessError):
        pass
    with _CHILDREN_LOCK:
        if process in _CHILDREN:
            _CHILDREN.remove(process)


def stop_all() -> None:
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for process in children:
        stop(process, grace=5)


@dataclass
class Bounded:
    """One child run to completion (or killed at its deadline), reaped with its rusage."""

    exit_code: int | None
    cpu_seconds: float
    system_seconds: float  # of cpu_seconds, in the kernel
    wall: float
    killed: bool


def run_bounded(command: list[str], *, seconds: float, stderr_path: Path) -> Bounded:
    """Run COMMAND, SIGINT at SECONDS (or on STOP), SIGKILL 5 s later; CPU from wait4."""
    with open(stderr_path, "wb") as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err,
                                   start_new_session=True)
    with _CHILDREN_LOCK:
        _CHILDREN.append(process)
    started = time.monotonic()
    deadline = started + seconds
    interrupted_at: float | None = None
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                return Bounded(process.returncode, usage.ru_utime + usage.ru_stime,
                               usage.ru_stime, time.monotonic() - started,
                               interrupted_at is not None)
            now = time.monotonic()
            if interrupted_at is None and (now > deadline or STOP.is_set()):
                os.kill(process.pid, signal.SIGINT)
                interrupted_at = now
            elif interrupted_at is not None and now > interrupted_at + 5:
                os.kill(process.pid, signal.SIGKILL)
            time.sleep(0.05)
    finally:
        with _CHILDREN_LOCK:
            if process in _CHILDREN:
                _CHILDREN.remove(process)


@contextmanager
def network_namespace(name: str) -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


CATCH = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    """First Ctrl-C/SIGTERM: unwind through every ``finally``; later ones would only cut
    the (bounded) cleanup short, so they are ignored."""
    for sig in CATCH:
        signal.signal(sig, signal.SIG_IGN)
    STOP.set()
    raise KeyboardInterrupt(f"signal {signum}")


# -- reading the daemon and Prometheus ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Fetch:
    status: int
    wire_bytes: int
    body: bytes
    seconds: float
    encoding: str


def fetch(url: str, *, timeout: float = 60, gzip_ok: bool = False) -> Fetch:
    """GET URL; bytes as they came over the wire, the body decoded, and the time taken."""
    require_loopback(urllib.parse.urlsplit(url).hostname or "")
    request = urllib.request.Request(url, headers={
        "Accept-Encoding": "gzip" if gzip_ok else "identity"})
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
            encoding = response.headers.get("Content-Encoding", "") or "identity"
    except urllib.error.HTTPError as exc:
        raw, status, encoding = exc.read(), exc.code, exc.headers.get("Content-Encoding", "")
    seconds = time.perf_counter() - began
    body = gzip.decompress(raw) if encoding == "gzip" else raw
    return Fetch(status, len(raw), body, seconds, encoding or "identity")


def get_json(url: str, timeout: float = 60) -> Any:
    return json.loads(fetch(url, timeout=timeout).body)


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
STATE_LABEL = re.compile(r'state="([^"]*)"')
SITE_LABEL = re.compile(r'site="([^"]*)"')


@dataclass
class Exposition:
    sums: dict[str, float]
    non_ready_now: dict[str, set[str]]  # state -> sites in it now

    def get(self, name: str) -> float | None:
        return self.sums.get(name)


def parse_exposition(text: str) -> Exposition:
    """Sum every sample per metric name; note the sites whose current state is not ready."""
    sums: dict[str, float] = {}
    non_ready: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        match = SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        sums[name] = sums.get(name, 0.0) + number
        if name == "bridgemon_site_state" and number == 1 and labels:
            state, site = STATE_LABEL.search(labels), SITE_LABEL.search(labels)
            if state and site and state.group(1) != "ready":
                non_ready.setdefault(state.group(1), set()).add(site.group(1))
    return Exposition(sums, non_ready)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(all, in the kernel) CPU seconds of PID so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[12]) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) in MB."""
    hwm = rss = float("nan")
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return hwm, rss


def kernel_raw_drops(pid: int) -> int | None:
    """Drops the kernel counted on PID's raw sockets (the last column of /proc/net/raw)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return None
    found, drops = False, 0
    for table in ("/proc/net/raw", "/proc/net/raw6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) >= 13 and cols[9] in inodes:
                found = True
                drops += int(cols[-1])
    return drops if found else None


class StaticExposition:
    """Pre-gzipped expositions on 127.0.0.1 (one per ``part`` asked for, as the daemon
    serves them), served as fast as Python can: the reference."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        empty = gzip.compress(b"# empty until the daemon is warm\n")
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                body = owner.bodies.get(query.get("part", ["1/1"])[0], empty)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, part: str, exposition: bytes) -> None:
        self.bodies[part] = gzip.compress(exposition, 1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def scrape_job(name: str, target: str, parts: int) -> str:
    """A scrape job of TARGET, in PARTS parts as deploy/prometheus/scrape-parts.yml has it."""
    if parts == 1:
        return (f"  - job_name: {name}\n"
                "    static_configs:\n"
                f"      - targets: ['{target}']\n")
    groups = "".join(f"      - targets: ['{target}']\n"
                     f"        labels: {{part: '{n}/{parts}'}}\n" for n in range(1, parts + 1))
    return (f"  - job_name: {name}\n"
            "    static_configs:\n"
            f"{groups}"
            "    relabel_configs:\n"
            "      - source_labels: [part]\n"
            "        target_label: __param_part\n"
            "    metric_relabel_configs:\n"
            "      - action: labeldrop\n"
            "        regex: part\n")


class Prometheus:
    """The Debian prometheus binary on 127.0.0.1 scraping the daemon (job JOB) and the
    static copy of its exposition (job REFERENCE_JOB), storage in WORKDIR."""

    def __init__(self, workdir: Path, target_port: int, parts: int = 1) -> None:
        self.parts = parts
        self.reference = StaticExposition()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL}s\n"
            f"  scrape_timeout: {SCRAPE_TIMEOUT}s\n"
            "  evaluation_interval: 1m\n"
            "scrape_configs:\n"
            + scrape_job(JOB, f"127.0.0.1:{target_port}", parts)
            + scrape_job(REFERENCE_JOB, f"127.0.0.1:{self.reference.port}", parts),
            encoding="utf-8",
        )
        (workdir / "tsdb").mkdir()
        self.log = workdir / "prometheus.log"
        self.process = spawn(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d",
             "--log.level=warn"],
            log=self.log, cwd=workdir,
        )

    def serve_reference_before_the_window(self, daemon: Daemon) -> None:
        """Give the static copy the daemon's exposition and let Prometheus scrape it once
        before the measured window: its first scrape creates 240,000 series, which the
        daemon's job did during the warm-up; counted in the window, it would make the floor
        look higher than it is."""
        try:
            for part in (f"{n}/{self.parts}" for n in range(1, self.parts + 1)):
                self.reference.serve(part, fetch(f"{daemon.base}/metrics?part={part}",
                                                 timeout=120, gzip_ok=True).body)
        except OSError:
            return
        time.sleep(SCRAPE_INTERVAL + 5)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if fetch(self.base + "/-/ready", timeout=5).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus not ready within 60 s")

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]] | None:
        """An instant query at AT; None when Prometheus cannot answer it."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr, "time": f"{at:.3f}"})
        try:
            body = get_json(url, timeout=60)
        except (OSError, ValueError):
            return None
        if body.get("status") != "success":
            return None
        return [(item["metric"], float(item["value"][1])) for item in body["data"]["result"]]

    def scalar(self, expr: str, at: float) -> float | None:
        """The first value of the answer; None when empty or unanswered."""
        result = self.query(expr, at)
        if not result:
            return None
        return result[0][1]

    def count(self, expr: str, at: float) -> float | None:
        """Like scalar, but an empty answer (count() of nothing) is 0."""
        result = self.query(expr, at)
        if result is None:
            return None
        return result[0][1] if result else 0.0


class Daemon:
    """``python -m bridgemon -c CONFIG run`` with its state in WORKDIR."""

    def __init__(self, config: Path, port: int, workdir: Path, *, listen: bool,
                 source: Path = REPO) -> None:
        self.port = port
        self.source = source
        self.base = f"http://127.0.0.1:{port}"
        self.log = workdir / "daemon.log"
        state = workdir / "state"
        state.mkdir()
        command = [sys.executable, "-m", "bridgemon", "-c", str(config),
                   "--log-level", "warning", "run"]
        if listen:
            command += ["--listen", f"127.0.0.1:{port}"]
        env = dict(os.environ, STATE_DIRECTORY=str(state), PYTHONPATH=str(source))
        self.process = spawn(command, log=self.log, cwd=workdir, env=env)
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def health(self, timeout: float = 30) -> dict[str, Any]:
        result: dict[str, Any] = get_json(self.base + "/healthz", timeout=timeout)
        return result

    def wait_warm(self, interval: float, timeout: float) -> float:
        """Wait for the first echo, then for a full round and interval + 10 s more."""
        deadline = time.monotonic() + timeout
        first_echo: float | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"daemon exited: {self.log.read_text()[-3000:]}")
            try:
                health = self.health(timeout=10)
            except (OSError, ValueError):
                health = {}
            if first_echo is None and health.get("echoes_sent", 0) > 0:
                first_echo = time.monotonic()
                print(f"    daemon probing (pid {self.pid}); warming up", flush=True)
            if (first_echo is not None and health.get("rounds", 0) >= 1
                    and time.monotonic() >= first_echo + interval + 10):
                return time.monotonic() - first_echo
            time.sleep(0.5)
        raise RuntimeError(f"daemon not warm within {timeout:.0f} s "
                           f"(first echo {'seen' if first_echo else 'never seen'})")

    def log_problems(self) -> list[str]:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [line for line in lines
                if re.search(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b", line)
                or line.startswith(("Traceback", "  File"))]


class MemorySampler(threading.Thread):
    """VmHWM and VmRSS of PID once a second; keeps the highest."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name="rss")
        self.pid = pid
        self.hwm = 0.0
        self.rss = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0) and not STOP.is_set():
            try:
                hwm, rss = memory_mb(self.pid)
            except OSError:
                return
            self.hwm, self.rss = max(self.hwm, hwm), max(self.rss, rss)


@dataclass
class Request:
    at: float
    seconds: float
    wire_bytes: int
    status: int | None
    error: str | None = None


@dataclass
class Verdicts:
    samples: int = 0
    ever: dict[str, set[str]] = field(default_factory=dict)
    sites: int = 0

    def add(self, body: bytes) -> None:
        data = json.loads(body)
        self.samples += 1
        self.sites = max(self.sites, len(data["sites"]))
        for site in data["sites"]:
            verdict = site.get("verdict")
            if verdict != "ready":
                self.ever.setdefault(str(verdict), set()).add(site["id"])

    def non_ready(self) -> int:
        return len(set().union(*self.ever.values())) if self.ever else 0

    def by_state(self) -> dict[str, int]:
        return {state: len(ids) for state, ids in sorted(self.ever.items())}


class Poller(threading.Thread):
    """GET URL every PERIOD seconds (first after OFFSET), timing and sizing each request."""

    def __init__(self, name: str, url: str, period: float, offset: float,
                 on_body: Callable[[bytes], None] | None = None) -> None:
        super().__init__(daemon=True, name=name)
        self.url, self.period, self.offset, self.on_body = url, period, offset, on_body
        self.requests: list[Request] = []
        self.done = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic() + self.offset
        while not self.done.wait(max(0.0, next_at - time.monotonic())) and not STOP.is_set():
            next_at += self.period
            began = time.monotonic()
            try:
                got = fetch(self.url, timeout=self.period)
                self.requests.append(Request(began, got.seconds, got.wire_bytes, got.status))
                if self.on_body is not None and got.status == 200:
                    self.on_body(got.body)
            except (OSError, ValueError) as exc:
                self.requests.append(Request(began, time.monotonic() - began, 0, None,
                                             type(exc).__name__))

    def figures(self) -> Row:
        ok = [r for r in self.requests if r.status == 200]
        times = [r.seconds for r in ok]
        return {
            "requests": len(self.requests),
            "errors": len(self.requests) - len(ok),
            "median_s": statistics.median(times) if times else None,
            "max_s": max(times) if times else None,
            "bytes": statistics.median(r.wire_bytes for r in ok) if ok else None,
        }


# -- fping: the CPU reference (own namespace) and the flood (host namespace) --------------


FPING_LINE = re.compile(r"^(\S+)\s+:\s+(.*)$")


def write_targets(path: Path, addresses: list[str]) -> Path:
    for address in addresses:
        require_loopback(address)
    path.write_text("\n".join(addresses) + "\n", encoding="utf-8")
    return path


@dataclass
class Reference:
    runs: int = 0
    cpu_seconds: float = 0.0
    system_seconds: float = 0.0
    echoes: int = 0
    received: int = 0
    killed: int = 0


class FpingReference(threading.Thread):
    """One fresh ``fping -C COUNT`` per interval inside the namespace, ROUNDS times."""

    def __init__(self, netns: str, targets: Path, sites: int, count: int, interval: float,
                 rounds: int, workdir: Path) -> None:
        super().__init__(daemon=True, name="fping-reference")
        gap_ms = max(interval * 0.8 * 1000 / (sites * count), 0.01)
        self.command = ["ip", "netns", "exec", netns, "fping", "-q", "-C", str(count),
                        "-p", "200", "-i", f"{gap_ms:.3f}", "-t", "1000", "-f", str(targets)]
        self.interval, self.rounds, self.workdir = interval, rounds, workdir
        self.figures = Reference()
        self.error: str | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            for index in range(self.rounds):
                wait = start + index * self.interval - time.monotonic()
                if wait > 0 and STOP.wait(wait):
                    return
                if STOP.is_set():
                    return
                err = self.workdir / f"fping-ref-{index}.txt"
                done = run_bounded(self.command, seconds=self.interval * 1.5, stderr_path=err)
                self.figures.runs += 1
                self.figures.cpu_seconds += done.cpu_seconds
                self.figures.system_seconds += done.system_seconds
                self.figures.killed += done.killed
                for line in err.read_text(errors="replace").splitlines():
                    match = FPING_LINE.match(line)
                    if match is None:
                        continue
                    values = match.group(2).split()
                    self.figures.echoes += len(values)
                    self.figures.received += sum(1 for v in values if v != "-")
        except Exception as exc:  # reported, not raised: the thread must never hang main
            self.error = f"{type(exc).__name__}: {exc}"


@dataclass
class FloodFigures:
    runs: int = 0
    sent: int = 0
    received: int = 0
    seconds: float = 0.0


class Flood(threading.Thread):
    """Repeated ``fping -c N -p 1 -i 0`` over TARGETS in the host namespace until END.

    fping keeps at most 65,535 echoes in flight per process (its sequence map, entries
    expiring after 10 s), so each run sends at most 60,000 echoes and a fresh one follows.
    """

    def __init__(self, targets: Path, hosts: int, end: float, workdir: Path) -> None:
        super().__init__(daemon=True, name="flood")
        count = max(1, min(200, 60_000 // hosts))
        self.command = ["fping", "-q", "-s", "-c", str(count), "-p", "1", "-i", "0",
                        "-t", "500", "-f", str(targets)]
        self.end, self.workdir = end, workdir
        self.figures = FloodFigures()
        self.error: str | None = None

    def run(self) -> None:
        began = time.monotonic()
        try:
            while not STOP.is_set() and time.monotonic() < self.end - 1:
                err = self.workdir / f"flood-{self.figures.runs}.txt"
                run_bounded(self.command, seconds=max(1.0, self.end - time.monotonic()),
                            stderr_path=err)
                self.figures.runs += 1
                text = err.read_text(errors="replace")
                sent = re.search(r"(\d+) ICMP Echos sent", text)
                got = re.search(r"(\d+) ICMP Echo Replies received", text)
                self.figures.sent += int(sent.group(1)) if sent else 0
                self.figures.received += int(got.group(1)) if got else 0
                if sent is None and self.error is None:
                    self.error = "fping gave no statistics: " + " | ".join(
                        text.strip().splitlines()[:2])
        except Exception as exc:  # reported, not raised
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.figures.seconds = time.monotonic() - began


# -- one measured session (shared by both scenarios) --------------------------------------


@dataclass
class Mark:
    """The daemon as seen at one edge of the measured window."""

    wall: float
    cpu: float
    cpu_system: float
    exposition: Exposition | None
    fetch: Fetch | None
    kernel_drops: int | None
    fetch_error: str | None = None


def mark(daemon: Daemon, *, gzip_ok: bool) -> Mark:
    wall = time.time()
    cpu, cpu_system = cpu_seconds(daemon.pid)
    drops = kernel_raw_drops(daemon.pid)
    try:
        got = fetch(daemon.base + "/metrics", timeout=120, gzip_ok=gzip_ok)
        return Mark(wall, cpu, cpu_system, parse_exposition(got.body.decode("utf-8", "replace")),
                    got, drops)
    except OSError as exc:
        return Mark(wall, cpu, cpu_system, None, None, drops, f"{type(exc).__name__}: {exc}")


def delta(before: Mark, after: Mark, name: str) -> float | None:
    if before.exposition is None or after.exposition is None:
        return None
    a, b = before.exposition.get(name), after.exposition.get(name)
    if a is None or b is None:
        return None
    return b - a


def prometheus_figures(prom: Prometheus, t0: float, t1: float) -> Row:
    """Everything Prometheus saw of the job in [t0, t1], evaluated at t1."""
    window = f"{max(1, round(t1 - t0))}s"
    sel = f'job="{JOB}"'
    row: Row = {}
    seen = prom.scalar(f"count(max_over_time(bridgemon_site_state{{{sel}}}[{window}]))", t1)
    row["prom_state_series"] = seen
    pairs = prom.query(
        f"max by (site, state) (max_over_time("
        f'bridgemon_site_state{{{sel},state!="ready"}}[{window}])) == 1', t1)
    if seen and pairs is not None:
        ever: dict[str, set[str]] = {}
        for labels, _value in pairs:
            ever.setdefault(labels.get("state", "?"), set()).add(labels.get("site", "?"))
        row["prom_non_ready"] = len(set().union(*ever.values())) if ever else 0
        row["prom_non_ready_by_state"] = {k: len(v) for k, v in sorted(ever.items())}
        row["prom_non_ready_sites"] = ever
        row["prom_sites_seen"] = prom.scalar(
            f"count(count by (site) (max_over_time(bridgemon_site_state{{{sel}}}[{window}])))",
            t1)
    else:
        row["prom_non_ready"] = None
        row["prom_non_ready_by_state"] = {}
        row["prom_non_ready_sites"] = {}
        row["prom_sites_seen"] = None
    # With the scrape in parts (--scrape-parts), the worst part's figures and the sums.
    row["scrape_parts"] = prom.parts
    row["scrape_p99_s"] = prom.scalar(
        f"max(quantile_over_time(0.99, scrape_duration_seconds{{{sel}}}[{window}]))", t1)
    row["scrape_max_s"] = prom.scalar(
        f"max(max_over_time(scrape_duration_seconds{{{sel}}}[{window}]))", t1)
    ref = f'job="{REFERENCE_JOB}"'
    row["reference_scrape_p99_s"] = prom.scalar(
        f"max(quantile_over_time(0.99, scrape_duration_seconds{{{ref}}}[{window}]))", t1)
    row["reference_scrape_median_s"] = prom.scalar(
        f"max(quantile_over_time(0.5, scrape_duration_seconds{{{ref}}}[{window}]))", t1)
    row["scrape_median_s"] = prom.scalar(
        f"max(quantile_over_time(0.5, scrape_duration_seconds{{{sel}}}[{window}]))", t1)
    row["reference_scrape_samples"] = prom.scalar(
        f"sum(max_over_time(scrape_samples_scraped{{{ref}}}[{window}]))", t1)
    row["scrape_samples"] = prom.scalar(
        f"sum(max_over_time(scrape_samples_scraped{{{sel}}}[{window}]))", t1)
    row["scrapes"] = prom.scalar(f"sum(count_over_time(up{{{sel}}}[{window}]))", t1)
    row["scrapes_ok"] = prom.scalar(f"sum(sum_over_time(up{{{sel}}}[{window}]))", t1)
    row["loop_lag_max_s"] = prom.scalar(
        f"max(max_over_time(bridgemon_event_loop_lag_seconds{{{sel}}}[{window}]))", t1)
    return row


@dataclass
class Session:
    """Daemon + Prometheus + API pollers (+ a side load) for one measured window."""

    workdir: Path
    daemon: Daemon
    prom: Prometheus
    selector: str
    poll: float
    memory: MemorySampler = field(init=False)
    verdicts: Verdicts = field(default_factory=Verdicts)
    pollers: list[Poller] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.memory = MemorySampler(self.daemon.pid)
        self.memory.start()

    def start_pollers(self) -> None:
        base = self.daemon.base
        quoted = urllib.parse.quote(self.selector, safe=":")
        self.pollers = [
            Poller("api_sites", base + "/api/v1/sites", self.poll, 0.0, self.verdicts.add),
            Poller("api_select", base + f"/api/v1/sites?select={quoted}", self.poll,
                   self.poll / 3),
            Poller("status_page", base + "/", self.poll, 2 * self.poll / 3),
        ]
        for poller in self.pollers:
            poller.start()

    def stop_pollers(self) -> None:
        for poller in self.pollers:
            poller.done.set()
        for poller in self.pollers:
            poller.join(timeout=self.poll + 5)

    def close(self) -> None:
        """Stop every reader thread (idempotent; also on the error path)."""
        self.memory.done.set()
        for poller in self.pollers:
            poller.done.set()

    def sleep_until(self, end: float) -> None:
        while (left := end - time.monotonic()) > 0:
            if not self.daemon.alive():
                raise RuntimeError(f"daemon exited: {self.daemon.log.read_text()[-3000:]}")
            time.sleep(min(1.0, left))

    def figures(self, before: Mark, after: Mark) -> Row:
        row: Row = {}
        sent = delta(before, after, "bridgemon_icmp_echoes_sent_total")
        received = delta(before, after, "bridgemon_icmp_echoes_received_total")
        row["site_echoes_sent"] = sent
        row["site_echoes_received"] = received
        row["false_losses"] = None if sent is None or received is None else sent - received
        row["daemon_echoes"] = delta(before, after, "bridgemon_pinger_echoes_sent_total")
        row["daemon_replies"] = delta(before, after, "bridgemon_pinger_echoes_received_total")
        row["stray_replies"] = delta(before, after, "bridgemon_pinger_stray_replies_total")
        row["receive_drops"] = delta(before, after, "bridgemon_pinger_receive_drops_total")
        row["kernel_raw_drops"] = (None if before.kernel_drops is None
                                   or after.kernel_drops is None
                                   else after.kernel_drops - before.kernel_drops)
        row["overruns"] = delta(before, after, "bridgemon_round_overruns_total")
        row["rounds"] = delta(before, after, "bridgemon_rounds_total")
        row["daemon_cpu_s"] = after.cpu - before.cpu
        row["daemon_cpu_system_s"] = after.cpu_system - before.cpu_system
        row["window_s"] = after.wall - before.wall
        row["non_ready_at_start"] = (len(set().union(*before.exposition.non_ready_now.values()))
                                     if before.exposition else None)
        row["non_ready_at_end"] = (len(set().union(*after.exposition.non_ready_now.values()))
                                   if after.exposition else None)
        row["metrics_end_non_ready_sites"] = after.exposition.non_ready_now \
            if after.exposition else {}
        for label, got in (("gzip", before.fetch), ("plain", after.fetch)):
            row[f"metrics_{label}_wire_bytes"] = got.wire_bytes if got else None
            row[f"metrics_{label}_body_bytes"] = len(got.body) if got else None
            row[f"metrics_{label}_s"] = got.seconds if got else None
            row[f"metrics_{label}_encoding"] = got.encoding if got else None
        row["metrics_fetch_errors"] = [m.fetch_error for m in (before, after) if m.fetch_error]
        row["api_non_ready"] = self.verdicts.non_ready() if self.verdicts.samples else None
        row["api_non_ready_by_state"] = self.verdicts.by_state()
        row["api_non_ready_sites"] = self.verdicts.ever
        row["api_samples"] = self.verdicts.samples
        for poller in self.pollers:
            for key, value in poller.figures().items():
                row[f"{poller.name}_{key}"] = value
        self.memory.done.set()
        self.memory.join(timeout=5)
        try:
            hwm, rss = memory_mb(self.daemon.pid)
            self.memory.hwm, self.memory.rss = max(self.memory.hwm, hwm), max(
                self.memory.rss, rss)
        except OSError:
            pass
        row["rss_peak_hwm_mb"] = self.memory.hwm or None
        row["rss_max_sampled_mb"] = self.memory.rss or None
        return row


# An idle asyncio loop with the daemon's own lag meter (same period), run beside it for the
# window: how late any loop on this machine fires when nothing but the OS delays it. The
# daemon's worst lag is read against this floor, as its CPU is read against fping's.
LAG_REFERENCE = """
import asyncio, sys
from bridgemon.loop_lag import LoopLagMeter

async def main(seconds: float) -> None:
    meter = LoopLagMeter(period=0.05)
    meter.start()
    await asyncio.sleep(seconds)
    meter.stop()
    print(meter.worst_ever)

asyncio.run(main(float(sys.argv[1])))
"""


class LagReference(threading.Thread):
    def __init__(self, seconds: float, source: Path) -> None:
        super().__init__(daemon=True, name="lag-reference")
        self.seconds = seconds
        self.source = source
        self.worst: float | None = None

    def run(self) -> None:
        try:
            done = subprocess.run(
                [sys.executable, "-c", LAG_REFERENCE, f"{self.seconds:.1f}"],
                cwd=self.source, capture_output=True, text=True, timeout=self.seconds + 30,
            )
            self.worst = float(done.stdout.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            self.worst = None


def measure(session: Session, duration: float, side: Callable[[float], None]) -> Row:
    """Warm, mark, read for DURATION with SIDE load started, mark, ask Prometheus."""
    before = mark(session.daemon, gzip_ok=True)
    lag_reference = LagReference(duration, session.daemon.source)
    lag_reference.start()
    session.start_pollers()
    end = time.monotonic() + duration
    side(end)
    session.sleep_until(end)
    after = mark(session.daemon, gzip_ok=False)
    session.stop_pollers()
    row = session.figures(before, after)
    lag_reference.join(timeout=60)
    row["reference_loop_lag_max_s"] = lag_reference.worst
    # Let the scrape in flight at t1 land (its samples carry its start time) before asking.
    time.sleep(SCRAPE_TIMEOUT + 2)
    row.update(prometheus_figures(session.prom, before.wall, after.wall))
    # Each reader samples: Prometheus every 15 s, the API client every poll, /metrics by
    # hand at the end. A site is counted if any of them caught it not ready.
    union: dict[str, set[str]] = {}
    for key in ("prom_non_ready_sites", "api_non_ready_sites", "metrics_end_non_ready_sites"):
        for state, sites in (row.pop(key) or {}).items():
            union.setdefault(state, set()).update(sites)
    row["any_non_ready"] = len(set().union(*union.values())) if union else 0
    row["any_non_ready_by_state"] = {k: len(v) for k, v in sorted(union.items())}
    row["any_non_ready_examples"] = sorted(set().union(*union.values()))[:10] if union else []
    return row


# -- scenarios ----------------------------------------------------------------------------


def scenario_load(args: argparse.Namespace, netns: str, repeat: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="bm-truth-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        config = workdir / "national.toml"
        config.write_text(national_inventory(args.sites, port=port,
                                             interval=f"{args.interval:g}s", count=args.count),
                          encoding="utf-8")
        targets = write_targets(workdir / "targets.txt",
                                [loopback_address(i) for i in range(args.sites)])
        check_config_loopback(tomllib.loads(config.read_text(encoding="utf-8")))
        daemon = Daemon(config, port, workdir, listen=False, source=args.daemon_source)
        prom = Prometheus(workdir, port, args.scrape_parts)
        reference: FpingReference | None = None
        session: Session | None = None
        try:
            prom.wait_ready()
            daemon.wait_warm(args.interval, timeout=3 * args.interval + 180)
            prom.serve_reference_before_the_window(daemon)
            session = Session(workdir, daemon, prom, "under:d0", args.poll)
            rounds = max(1, round(args.duration / args.interval))

            def side(_end: float) -> None:
                nonlocal reference
                reference = FpingReference(netns, targets, args.sites, args.count,
                                           args.interval, rounds, workdir)
                reference.start()

            print(f"    measuring {args.duration:g} s (Prometheus, API clients, "
                  f"fping ×{rounds} in {netns})", flush=True)
            row = measure(session, args.duration, side)
            assert reference is not None
            reference.join(timeout=args.interval * 2 + 10)
            ref = reference.figures
            row["fping_runs"] = ref.runs
            row["fping_killed"] = ref.killed
            row["fping_error"] = reference.error
            row["fping_cpu_s"] = ref.cpu_seconds
            row["fping_cpu_system_s"] = ref.system_seconds
            row["fping_echoes"] = ref.echoes
            row["fping_received"] = ref.received
            row["daemon_cpu_per_1000"] = (row["daemon_cpu_s"] / row["daemon_echoes"] * 1000
                                          if row["daemon_echoes"] else None)
            row["fping_cpu_per_1000"] = (ref.cpu_seconds / ref.echoes * 1000
                                         if ref.echoes else None)
            row["cpu_ratio"] = (row["daemon_cpu_per_1000"] / row["fping_cpu_per_1000"]
                                if row["daemon_cpu_per_1000"] and row["fping_cpu_per_1000"]
                                else None)
        finally:
            shut_down(session, reference, prom, daemon)
        add_logs(row, daemon, prom)
        row["sites"] = args.sites
        row["repeat"] = repeat
        return row


def shut_down(session: Session | None, side: threading.Thread | None, prom: Prometheus,
              daemon: Daemon) -> None:
    """Stop the clients, the side load (fping or the flood), Prometheus and the daemon."""
    STOP.set()
    if session is not None:
        session.close()
    if side is not None:
        side.join(timeout=15)
    stop(prom.process)
    prom.reference.close()
    stop(daemon.process)
    STOP.clear()


def add_logs(row: Row, daemon: Daemon, prom: Prometheus) -> None:
    row["daemon_log_problems"] = daemon.log_problems()[:20]
    row["prometheus_log_tail"] = prom.log.read_text(errors="replace").splitlines()[-5:]


def scenario_flood(args: argparse.Namespace) -> Row:
    shipped = REPO / "config" / "sites.toml"
    parsed = tomllib.loads(shipped.read_text(encoding="utf-8"))
    check_config_loopback(parsed)
    interval = parse_duration(parsed.get("monitor", {}).get("interval", "30s"))
    sites = len(parsed.get("sites", []))
    duration = args.flood_duration or 2 * interval
    with tempfile.TemporaryDirectory(prefix="bm-flood-") as tmp:
        workdir = Path(tmp)
        config = workdir / "sites.toml"
        shutil.copyfile(shipped, config)
        targets = write_targets(workdir / "flood.txt",
                                [flood_address(i) for i in range(args.flood_targets)])
        port = free_port()
        daemon = Daemon(config, port, workdir, listen=True, source=args.daemon_source)
        prom = Prometheus(workdir, port)
        flood: Flood | None = None
        session: Session | None = None
        try:
            prom.wait_ready()
            daemon.wait_warm(interval, timeout=3 * interval + 120)
            prom.serve_reference_before_the_window(daemon)
            session = Session(workdir, daemon, prom, "under:502", args.poll)

            def side(end: float) -> None:
                nonlocal flood
                flood = Flood(targets, args.flood_targets, end, workdir)
                flood.start()

            print(f"    measuring {duration:g} s under a flood to {args.flood_targets} "
                  f"targets (host namespace)", flush=True)
            row = measure(session, duration, side)
            assert flood is not None
            flood.join(timeout=20)
            figures = flood.figures
            row["flood_runs"] = figures.runs
            row["flood_sent"] = figures.sent
            row["flood_received"] = figures.received
            row["flood_seconds"] = figures.seconds
            row["flood_echoes_per_s"] = (figures.sent / figures.seconds
                                         if figures.seconds else None)
            row["flood_error"] = flood.error
        finally:
            shut_down(session, flood, prom, daemon)
        add_logs(row, daemon, prom)
        row["sites"] = sites
        row["interval"] = interval
        row["duration"] = duration
        return row


# -- reporting ----------------------------------------------------------------------------


def median_row(rows: list[Row]) -> Row:
    out: Row = {}
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers:
            out[key] = statistics.median(numbers)
        elif (dicts := [v for v in values if isinstance(v, dict)]) and len(dicts) == len(rows):
            states = sorted({k for v in dicts for k in v})
            out[key] = {s: statistics.median(v.get(s, 0) for v in dicts) for s in states}
        else:
            out[key] = values[0] if all(v == values[0] for v in values) else None
    return out


def num(value: Any, fmt: str = "{:.0f}", unit: str = "") -> str:
    if value is None:
        return "n/a"
    return fmt.format(value) + unit


def absent(value: Any, fmt: str, unit: str = "") -> str:
    return "n/a (metric absent)" if value is None else fmt.format(value) + unit


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def line(label: str, value: str, goal: str = "", ok: bool | None = None) -> str:
    return f"  {label:<36} {value:<34} {goal:<18} {verdict(ok)}".rstrip()


def states_text(by_state: dict[str, Any]) -> str:
    if not by_state:
        return "none"
    return ", ".join(f"{state} {count:.0f}" for state, count in sorted(by_state.items()))


def le(value: Any, goal: float, strict: bool = True) -> bool | None:
    if value is None:
        return None
    return bool(value < goal) if strict else bool(value <= goal)


def report_common(row: Row, sites: int) -> list[str]:
    out = []
    any_nr = row.get("any_non_ready")
    out.append(line("healthy sites judged not ready", f"{num(any_nr)} of {sites}",
                    f"0 of {sites}", None if any_nr is None else any_nr == 0))
    out.append(f"      by state: {states_text(row.get('any_non_ready_by_state') or {})} "
               "(caught by any reader: Prometheus, API samples, /metrics at the end)")
    prom_nr = row.get("prom_non_ready")
    out.append(line("  … seen by Prometheus",
                    f"{num(prom_nr)} of {sites}", f"0 of {sites}",
                    None if prom_nr is None else prom_nr == 0))
    out.append(f"      by state: {states_text(row.get('prom_non_ready_by_state') or {})}; "
               f"sites seen {num(row.get('prom_sites_seen'))}, scrapes ok "
               f"{num(row.get('scrapes_ok'))}/{num(row.get('scrapes'))}")
    api_nr = row.get("api_non_ready")
    out.append(line("  … seen by the API samples",
                    f"{num(api_nr)} of {sites}", f"0 of {sites}",
                    None if api_nr is None else api_nr == 0))
    out.append(f"      by state: {states_text(row.get('api_non_ready_by_state') or {})}; "
               f"{num(row.get('api_samples'))} samples; not ready in /metrics at start "
               f"{num(row.get('non_ready_at_start'))}, at end {num(row.get('non_ready_at_end'))}")
    fl = row.get("false_losses")
    out.append(line("answered echoes counted lost", num(fl), "0",
                    None if fl is None else fl == 0))
    out.append(f"      per-site echoes sent {num(row.get('site_echoes_sent'))}, received "
               f"{num(row.get('site_echoes_received'))}; rounds {num(row.get('rounds'))}, "
               f"overruns {num(row.get('overruns'))}")
    p99 = row.get("scrape_p99_s")
    parts = row.get("scrape_parts") or 1
    label = ("Prometheus scrape p99 / max" if parts == 1
             else f"… worst of {parts} parts p99 / max")
    out.append(line(label, f"{num(p99, '{:.3f}', ' s')} / "
                    f"{num(row.get('scrape_max_s'), '{:.3f}', ' s')}",
                    f"p99 < {GOAL_SCRAPE_P99} s", le(p99, GOAL_SCRAPE_P99)))
    ref99 = row.get("reference_scrape_p99_s")
    out.append(line("  … same bytes from a static file p99",
                    f"{num(ref99, '{:.3f}', ' s')} (Prometheus's floor here)",
                    f"ratio p99 {num(p99 / ref99 if p99 and ref99 else None, '{:.2f}', '×')}"))
    out.append(f"      medians: daemon {num(row.get('scrape_median_s'), '{:.3f}', ' s')}, static "
               f"{num(row.get('reference_scrape_median_s'), '{:.3f}', ' s')} "
               f"({num(row.get('reference_scrape_samples'))} samples)")
    out.append(f"      samples per scrape {num(row.get('scrape_samples'))}; /metrics by hand: "
               f"gzip {num(row.get('metrics_gzip_wire_bytes'))} B on the wire "
               f"({row.get('metrics_gzip_encoding') or 'n/a'}, body "
               f"{num(row.get('metrics_gzip_body_bytes'))} B) in "
               f"{num(row.get('metrics_gzip_s'), '{:.3f}', ' s')}; plain "
               f"{num(row.get('metrics_plain_wire_bytes'))} B in "
               f"{num(row.get('metrics_plain_s'), '{:.3f}', ' s')}")
    lag = row.get("loop_lag_max_s")
    out.append(line("worst event-loop lag", absent(lag, "{:.4f}", " s"),
                    f"< {GOAL_LOOP_LAG * 1000:.0f} ms", le(lag, GOAL_LOOP_LAG)))
    ref_lag = row.get("reference_loop_lag_max_s")
    out.append(line("  … an idle asyncio loop beside it", absent(ref_lag, "{:.4f}", " s"),
                    "the machine's own floor"))
    out.append(line("receive drops (daemon metric)", absent(row.get("receive_drops"), "{:.0f}"),
                    "0", None if row.get("receive_drops") is None
                    else row["receive_drops"] == 0))
    out.append(line("receive drops (kernel /proc/net/raw)", num(row.get("kernel_raw_drops")),
                    "0", None if row.get("kernel_raw_drops") is None
                    else row["kernel_raw_drops"] == 0))
    out.append(line("stray replies", absent(row.get("stray_replies"), "{:.0f}")))
    hwm = row.get("rss_peak_hwm_mb")
    out.append(line("daemon RSS peak (VmHWM) / max VmRSS",
                    f"{num(hwm, '{:.0f}', ' MB')} / "
                    f"{num(row.get('rss_max_sampled_mb'), '{:.0f}', ' MB')}",
                    f"< {GOAL_RSS_MB:.0f} MB", le(hwm, GOAL_RSS_MB)))
    for name, title in (("api_sites", "GET /api/v1/sites"),
                        ("api_select", "GET /api/v1/sites?select=…"),
                        ("status_page", "GET / (status page)")):
        out.append(line(title, f"median {num(row.get(f'{name}_median_s'), '{:.3f}', ' s')}, "
                        f"max {num(row.get(f'{name}_max_s'), '{:.3f}', ' s')}",
                        f"{num(row.get(f'{name}_bytes'))} B, "
                        f"{num(row.get(f'{name}_errors'))} err"))
    return out


def report_load(row: Row, args: argparse.Namespace, title: str) -> list[str]:
    out = [title]
    out += report_common(row, args.sites)
    ratio = row.get("cpu_ratio")
    d1000, f1000 = row.get("daemon_cpu_per_1000"), row.get("fping_cpu_per_1000")
    out.append(line("CPU per 1,000 echoes daemon / fping",
                    f"{num(d1000 and d1000 * 1000, '{:.1f}', ' ms')} / "
                    f"{num(f1000 and f1000 * 1000, '{:.1f}', ' ms')}"))
    out.append(line("CPU ratio daemon ÷ fping", num(ratio, "{:.2f}", "×"),
                    f"≤ {GOAL_CPU_RATIO:.1f}×", le(ratio, GOAL_CPU_RATIO, strict=False)))
    out.append(f"      daemon {num(row.get('daemon_cpu_s'), '{:.1f}')} s CPU for "
               f"{num(row.get('daemon_echoes'))} echoes ({num(row.get('daemon_replies'))} "
               f"replies); fping {num(row.get('fping_cpu_s'), '{:.1f}')} s for "
               f"{num(row.get('fping_echoes'))} echoes ({num(row.get('fping_received'))} "
               f"replies) in {num(row.get('fping_runs'))} runs")
    daemon_kernel = percent(row, "daemon_cpu_system_s", "daemon_cpu_s")
    out.append(f"      in the kernel: daemon {daemon_kernel}, "
               f"fping {percent(row, 'fping_cpu_system_s', 'fping_cpu_s')} (system calls, and "
               "on loopback the target's side of each echo too)")
    return out


def percent(row: Row, part: str, whole: str) -> str:
    a, b = row.get(part), row.get(whole)
    return f"{a / b * 100:.0f} %" if isinstance(a, float) and isinstance(b, float) and b else "n/a"


def report_flood(row: Row) -> list[str]:
    out = [f"Scenario B — foreign flood: {row['sites']} shipped sites every "
           f"{row['interval']:g} s, {row['duration']:g} s measured"]
    out += report_common(row, row["sites"])
    out.append(line("flood achieved", num(row.get("flood_echoes_per_s"), "{:.0f}", " echoes/s"),
                    f"{num(row.get('flood_sent'))} sent"))
    out.append(f"      {num(row.get('flood_received'))} replies to fping in "
               f"{num(row.get('flood_runs'))} runs; daemon CPU "
               f"{num(row.get('daemon_cpu_s'), '{:.1f}')} s")
    return out


def print_problems(row: Row) -> None:
    problems = row.get("daemon_log_problems") or []
    if problems:
        print(f"    daemon log ({len(problems)} warning/error lines, first ones):")
        for text in problems[:8]:
            print(f"      {text[:160]}")
    errors = row.get("metrics_fetch_errors") or []
    for text in errors:
        print(f"    /metrics fetch failed: {text}")
    for key in ("fping_error", "flood_error"):
        if row.get(key):
            print(f"    {key}: {row[key]}")


def daemon_tree(source: Path) -> str:
    """Where bridgemon is imported from (for the repository, its commit and changed files),
    and whether its hot modules run compiled there (``bridgemon.compiled``: a tree
    unpacked from git runs them from source until ``python setup.py build_ext --inplace``
    compiles it)."""
    return f"{_tree(source)}; hot modules {_hot_modules(source)}"


def _hot_modules(source: Path) -> str:
    if not (source / "bridgemon" / "compiled.py").is_file():
        return "plain Python (a tree from before bridgemon.compiled)"
    try:
        return subprocess.run(
            [sys.executable, "-c", "import bridgemon.compiled as c; print(c.REASON)"],
            capture_output=True, text=True, timeout=30, cwd=source,
            env=dict(os.environ, PYTHONPATH=str(source)),
        ).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _tree(source: Path) -> str:
    if source.resolve() != REPO:
        return f"bridgemon imported from {source}"
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "bridgemon"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}" + (f" + {len(dirty)} changed file(s) in bridgemon/"
                                     if dirty else " (clean)")


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sites", type=int, default=12000, help="scenario A sites")
    parser.add_argument("--count", type=int, default=5, help="echoes per site per round")
    parser.add_argument("--interval", type=float, default=30, help="scenario A round interval")
    parser.add_argument("--duration", type=float, default=150, help="scenario A seconds measured")
    parser.add_argument("--repeats", type=int, default=3, help="scenario A repeats")
    parser.add_argument("--poll", type=float, default=30, help="API/status-page poll period")
    parser.add_argument("--only", choices=["load", "flood"], help="run one scenario only")
    parser.add_argument("--flood-targets", type=int, default=2000)
    parser.add_argument("--flood-duration", type=float, default=0,
                        help="scenario B seconds measured (default: 2 intervals of the config)")
    parser.add_argument("--scrape-parts", type=int, default=1, metavar="M",
                        help="Prometheus scrapes the daemon (and the static copy) in M parts, "
                        "as deploy/prometheus/scrape-parts.yml does (default 1: one target)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--daemon-source", type=Path, default=REPO, metavar="DIR",
                        help="import bridgemon from DIR (default: this repository), e.g. a "
                        "`git archive HEAD bridgemon | tar -x -C DIR` export, to measure a "
                        "fixed version while the working tree changes")
    args = parser.parse_args()
    if not (args.daemon_source / "bridgemon" / "__main__.py").is_file():
        print(f"--daemon-source: no bridgemon package in {args.daemon_source}", file=sys.stderr)
        return 2
    for tool in ("fping", "ip", "prometheus"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (apt-get install fping iproute2 prometheus)",
                  file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("run as root (raw ICMP sockets, network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= args.sites <= 250 * 256 * 4 or not 1 <= args.flood_targets <= 250 * 256 * 4:
        print("--sites and --flood-targets: 1 to 256,000", file=sys.stderr)
        return 2
    if not 1 <= args.scrape_parts <= 16:
        print("--scrape-parts: 1 to 16", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.interval < 1 or args.repeats < 1 or args.poll < 1:
        print("--duration, --interval, --repeats and --poll must be positive", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    for sig in CATCH:  # also SIGINT: Python leaves it ignored when started in background
        signal.signal(sig, _raise_interrupt)

    results: Row = {"args": {k: str(v) if isinstance(v, Path) else v
                             for k, v in vars(args).items()},
                    "daemon_tree": daemon_tree(args.daemon_source)}
    print(f"daemon under test: {results['daemon_tree']}", flush=True)
    started = time.monotonic()
    summary: list[str] = []
    try:
        if args.only in (None, "load"):
            rows: list[Row] = []
            with network_namespace(f"bm-ref-{os.getpid()}") as netns:
                for repeat in range(args.repeats):
                    print(f"scenario A, repeat {repeat + 1}/{args.repeats}: {args.sites} sites",
                          flush=True)
                    row = scenario_load(args, netns, repeat + 1)
                    rows.append(row)
                    print("\n".join(report_load(row, args, f"  repeat {repeat + 1}:")))
                    print_problems(row)
                    print(flush=True)
            median = median_row(rows)
            results["load"] = {"repeats": rows, "median": median}
            summary += report_load(
                median, args,
                f"Scenario A — national load: {args.sites} loopback sites × {args.count} echoes "
                f"every {args.interval:g} s, {args.duration:g} s measured, "
                f"{'median of ' + str(args.repeats) if args.repeats > 1 else '1 run'}")
        if args.only in (None, "flood"):
            print("scenario B: foreign flood", flush=True)
            row = scenario_flood(args)
            print_problems(row)
            results["flood"] = row
            summary += ["", *report_flood(row)]
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        STOP.set()
        stop_all()
        if args.json and len(results) > 1:
            args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print()
    print("\n".join(summary))
    print(f"\n(total {time.monotonic() - started:.0f} s; daemon {results['daemon_tree']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
