"""National-scale pinging: the bridgemon daemon side by side with fping, same targets, same run.

    sudo .venv/bin/python benchmarks/scale.py                  # 12,000 sites, 3 repeats
    sudo .venv/bin/python benchmarks/scale.py --sites 2000 --repeats 1 --interval 10

Each repeat runs, one after the other so they never compete for the two cores:
- fping -C COUNT over every target, its inter-packet gap chosen so its echoes spread over
  the same time as the daemon's round;
- ``bridgemon run`` on a generated inventory of the same loopback targets for ROUNDS
  rounds, measured from its first echo (start-up excluded).
Reported (medians of the repeats): CPU seconds per 1,000 echoes for both and their ratio,
the median RTT of each and the difference, echoes the daemon lost that fping got, and the
daemon's peak RSS. With ``--checks`` each repeat also runs the daemon with two service
checks per site (TCP connect and SIP OPTIONS over UDP) against loopback listeners, and
reports the extra CPU per check and the round time. Everything stays on 127.0.0.0/8;
every run is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inventory import loopback_address, national_inventory

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figures:
    echoes: int
    received: int
    cpu_seconds: float
    cpu_per_1000: float
    rtt_median_ms: float
    per_target_received: dict[str, int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_fping(targets: list[str], count: int, spread: float, timeout_ms: int) -> Figures:
    gap_ms = max(spread * 1000 / (len(targets) * count), 0.01)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(targets) + "\n")
        target_file = f.name
    command = ["fping", "-q", "-C", str(count), "-p", "200", "-i", f"{gap_ms:.3f}",
               "-t", str(timeout_ms), "-f", target_file]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    assert process.stderr is not None
    output = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    os.unlink(target_file)
    rtts: list[float] = []
    per_target: dict[str, int] = {}
    for line in output.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if not match:
            continue
        values = match.group(2).split()
        got = [float(v) for v in values if v != "-"]
        per_target[match.group(1)] = len(got)
        rtts.extend(got)
    echoes = len(targets) * count
    cpu = usage.ru_utime + usage.ru_stime
    return Figures(echoes, len(rtts), cpu, cpu / echoes * 1000,
                   statistics.median(rtts) if rtts else float("nan"), per_target)


def _get(url: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


CHECKS = """
[profiles.default.checks.sip]
type = "sip"
port = {sip}
timeout = "2s"
[profiles.default.checks.codec]
type = "tcp"
port = {tcp}
timeout = "2s"
"""


def run_daemon(sites: int, rounds: int, interval: float, count: int, workdir: Path,
               checks: tuple[int, int] | None = None) -> tuple[Figures, float, dict[str, float]]:
    port = free_port()
    config = workdir / "national.toml"
    extra = CHECKS.format(sip=checks[0], tcp=checks[1]) if checks else ""
    config.write_text(national_inventory(sites, port=port, interval=f"{interval:g}s",
                                         count=count, extra=extra), encoding="utf-8")
    log = open(workdir / "daemon.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "bridgemon", "-c", str(config), "--log-level", "warning", "run"],
        stdout=log, stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        health: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            try:
                health = _get(base + "/healthz", timeout=5)
                if health["echoes_sent"] > 0:
                    break
            except OSError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"daemon exited: {(workdir / 'daemon.log').read_text()}")
            time.sleep(0.05)
        else:
            raise RuntimeError("daemon did not start probing within 120 s")
        cpu0, sent0, received0 = _cpu_seconds(process.pid), health["echoes_sent"], \
            health["echoes_received"]
        rounds0 = health["rounds"]
        started = time.monotonic()
        time.sleep(rounds * interval)
        cpu1 = _cpu_seconds(process.pid)
        health = _get(base + "/healthz")
        wall = time.monotonic() - started
        sent = health["echoes_sent"] - sent0
        rounds_done = health["rounds"] - rounds0
        received = health["echoes_received"] - received0
        api = _get(base + "/api/v1/sites")
        rtts: list[float] = []
        per_target: dict[str, int] = {}
        for site in api["sites"]:
            for check in site["checks"]:
                if check["type"] == "icmp":
                    got = [v for v in check["rtts_ms"] if v is not None]
                    rtts.extend(got)
                    per_target[site["address"]] = len(got)
        metrics = urllib.request.urlopen(base + "/metrics", timeout=120).read().decode()
        overruns = sum(float(v) for v in re.findall(
            r"^bridgemon_round_overruns_total\{[^}]*\} (\S+)$", metrics, re.M))
        durations = [float(v) for v in re.findall(
            r"^bridgemon_round_duration_seconds\{[^}]*\} (\S+)$", metrics, re.M)]
        rss = _peak_rss_mb(process.pid)
        checks_failed = len(re.findall(
            r'^bridgemon_check_up\{[^}]*check="(?:sip|codec)"[^}]*\} 0\.0$', metrics, re.M))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    cpu = cpu1 - cpu0
    figures = Figures(sent, received, cpu, cpu / max(sent, 1) * 1000,
                      statistics.median(rtts) if rtts else float("nan"), per_target)
    return figures, rss, {"overruns": overruns, "round_seconds": max(durations, default=0),
                          "wall": wall, "rounds": rounds_done, "checks_failed": checks_failed}


def run_with_checks(args: argparse.Namespace, icmp_only: Figures) -> dict[str, float]:
    """The same daemon with two checks per site; the extra CPU is the checks' cost."""
    sip, tcp = free_port(), free_port()
    listeners = subprocess.Popen(
        [sys.executable, "-m", "bridgemon.lab.servers", "--sip", str(sip), "--tcp", str(tcp),
         "--ready"], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert listeners.stdout is not None and listeners.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as tmp:
            ours, _rss, extra = run_daemon(args.sites, args.rounds, args.interval, args.count,
                                           Path(tmp), checks=(sip, tcp))
    finally:
        listeners.terminate()
        listeners.wait(timeout=10)
    checks = extra["rounds"] * args.sites * 2
    extra_cpu = ours.cpu_seconds - icmp_only.cpu_seconds * ours.echoes / max(icmp_only.echoes, 1)
    return {
        "cpu_per_check_us": extra_cpu / max(checks, 1) * 1e6,
        "round_seconds_with_checks": extra["round_seconds"],
        "overruns_with_checks": extra["overruns"],
        "checks_failed": extra["checks_failed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=12000)
    parser.add_argument("--count", type=int, default=5, help="echoes per site per round")
    parser.add_argument("--interval", type=float, default=30, help="round interval, seconds")
    parser.add_argument("--rounds", type=int, default=2, help="daemon rounds measured")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checks", action="store_true",
                        help="also measure two service checks per site (TCP, SIP/UDP)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if shutil.which("fping") is None:
        print("fping is needed as the reference (apt-get install fping)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root (raw ICMP sockets for both pingers)", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    targets = [loopback_address(i) for i in range(args.sites)]
    spread = args.interval * 0.8
    results = []
    for repeat in range(args.repeats):
        fping = run_fping(targets, args.count, spread, 1000)
        with tempfile.TemporaryDirectory() as tmp:
            ours, rss, extra = run_daemon(args.sites, args.rounds, args.interval, args.count,
                                          Path(tmp))
        lost_vs_fping = sum(
            max(0, got - ours.per_target_received.get(target, 0))
            for target, got in fping.per_target_received.items()
        )
        row = {
            "fping_cpu_per_1000": fping.cpu_per_1000,
            "bridgemon_cpu_per_1000": ours.cpu_per_1000,
            "cpu_ratio": ours.cpu_per_1000 / fping.cpu_per_1000,
            "fping_rtt_median_ms": fping.rtt_median_ms,
            "bridgemon_rtt_median_ms": ours.rtt_median_ms,
            "rtt_median_diff_ms": ours.rtt_median_ms - fping.rtt_median_ms,
            "fping_received": fping.received,
            "fping_echoes": fping.echoes,
            "bridgemon_received": ours.received,
            "bridgemon_echoes": ours.echoes,
            "lost_that_fping_got": lost_vs_fping,
            "peak_rss_mb": rss,
            **extra,
        }
        if args.checks:
            row.update(run_with_checks(args, ours))
        results.append(row)
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True)
    median = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print()
    print(f"{args.sites} loopback sites × {args.count} echoes every {args.interval:g} s, "
          f"medians of {args.repeats}:")
    print(f"  CPU per 1,000 echoes   bridgemon {median['bridgemon_cpu_per_1000'] * 1000:.1f} ms"
          f"   fping {median['fping_cpu_per_1000'] * 1000:.1f} ms"
          f"   ratio {median['cpu_ratio']:.2f}× (goal ≤ 2×)")
    print(f"  RTT median             bridgemon {median['bridgemon_rtt_median_ms']:.4f} ms"
          f"   fping {median['fping_rtt_median_ms']:.4f} ms"
          f"   difference {median['rtt_median_diff_ms']:+.4f} ms (goal ≤ 0.02 ms)")
    print(f"  lost that fping got    {median['lost_that_fping_got']:.0f} (goal 0)")
    print(f"  daemon peak RSS        {median['peak_rss_mb']:.0f} MB (goal < 300 MB)")
    print(f"  round overruns         {median['overruns']:.0f}; longest round "
          f"{median['round_seconds']:.1f} s of {args.interval:g} s")
    if args.checks:
        print(f"  service checks         {median['cpu_per_check_us']:.0f} µs CPU per check "
              f"(TCP connect + SIP OPTIONS/UDP, 2 per site); longest round "
              f"{median['round_seconds_with_checks']:.1f} s of {args.interval:g} s; "
              f"overruns {median['overruns_with_checks']:.0f}; failed checks "
              f"{median['checks_failed']:.0f}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "repeats": results, "median": median}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
