"""Why bridgemon has its own ICMP engine: icmplib's pingers against it, many hosts at once.

    sudo .venv/bin/pip install icmplib                       # or: pip install -e '.[bench]'
    sudo .venv/bin/python benchmarks/icmplib_vs_engine.py            # 100 and 1,000 hosts
    sudo .venv/bin/python benchmarks/icmplib_vs_engine.py --hosts 2000 --repeats 1

For each number of hosts, one after the other in this process (never at the same time, so
neither sees the other's replies), every host on 127.0.0.0/8, all of them at once as the
daemon's rounds start them, COUNT echoes each SPACING apart with a TIMEOUT:

- icmplib: ``async_multiping(..., concurrent_tasks=HOSTS, privileged=True)``, its way of
  pinging many hosts: a raw socket per host;
- bridgemon's ``Pinger``: ``burst`` per host, over its one shared socket.

Every echo to a loopback address is answered by the kernel within microseconds, so an
echo reported lost is a loss the pinger made, and an RTT far above the engine's is time
the reply spent waiting to be read. Reported per pinger: echoes lost, RTT median and p99,
wall time and CPU time of the process (user + system, ``time.process_time``) per
echo; medians of REPEATS runs.
Traffic goes to 127.0.0.0/8 only; each run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inventory import loopback_address
from bridgemon.probes.pinger import Pinger


@dataclass
class Run:
    echoes: int
    lost: int
    rtts_ms: list[float]
    wall: float
    cpu: float


async def run_icmplib(targets: list[str], count: int, spacing: float, timeout: float) -> Run:
    import icmplib  # type: ignore[import-untyped]  # only this benchmark needs it

    started, before = time.monotonic(), time.process_time()
    hosts = await icmplib.async_multiping(
        targets, count=count, interval=spacing, timeout=timeout,
        concurrent_tasks=len(targets), privileged=True)
    cpu = time.process_time() - before
    rtts = [rtt for host in hosts for rtt in host.rtts]
    sent = sum(host.packets_sent for host in hosts)
    return Run(sent, sent - len(rtts), rtts, time.monotonic() - started, cpu)


async def run_engine(targets: list[str], count: int, spacing: float, timeout: float) -> Run:
    pinger = Pinger()
    try:
        await pinger.burst(targets[0], count=1, timeout=timeout)  # the socket, opened
        started, before = time.monotonic(), time.process_time()
        bursts = await asyncio.gather(*(
            pinger.burst(target, count=count, spacing=spacing, timeout=timeout)
            for target in targets))
        cpu = time.process_time() - before
    finally:
        pinger.close()
    rtts = [rtt * 1000 for burst in bursts for rtt in burst.rtts if rtt is not None]
    sent = sum(len(burst.rtts) for burst in bursts)
    return Run(sent, sent - len(rtts), rtts, time.monotonic() - started, cpu)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bounded(run: Callable[..., Awaitable[Run]], targets: list[str], args: argparse.Namespace
            ) -> Run:
    limit = args.count * args.spacing + args.timeout + 60 + len(targets) / 50
    return asyncio.run(asyncio.wait_for(
        run(targets, args.count, args.spacing, args.timeout), limit))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--count", type=int, default=5, help="echoes per host")
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between echoes")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per echo")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: both pingers use raw ICMP sockets", file=sys.stderr)
        return 2
    try:
        import icmplib  # noqa: F401
    except ImportError:
        print("icmplib is needed: .venv/bin/pip install icmplib", file=sys.stderr)
        return 2
    if not all(1 <= hosts <= 5000 for hosts in args.hosts) or args.repeats < 1 \
            or not 1 <= args.count <= 50:
        print("--hosts 1..5000, --count 1..50, --repeats >= 1", file=sys.stderr)
        return 2
    # A socket per host for icmplib: raise the descriptor limit as far as allowed.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(args.hosts) + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    print(f"{args.count} echoes per host, {args.spacing:g} s apart, timeout {args.timeout:g} s;"
          f" medians of {args.repeats} runs")
    print(f"{'hosts':>6} {'pinger':8} {'lost':>14} {'RTT p50':>10} {'RTT p99':>10} "
          f"{'wall':>7} {'CPU/echo':>10}")
    for hosts in args.hosts:
        targets = [loopback_address(index) for index in range(hosts)]
        for name, run in (("icmplib", run_icmplib), ("engine", run_engine)):
            runs = [bounded(run, targets, args) for _ in range(args.repeats)]
            lost = statistics.median(r.lost for r in runs)
            echoes = runs[0].echoes
            p50 = statistics.median(percentile(r.rtts_ms, 0.5) for r in runs)
            p99 = statistics.median(percentile(r.rtts_ms, 0.99) for r in runs)
            wall = statistics.median(r.wall for r in runs)
            cpu = statistics.median(r.cpu / r.echoes * 1e6 for r in runs)
            print(f"{hosts:>6} {name:8} {lost:>6.0f} ({lost / echoes:5.1%}) {p50:>7.3f} ms "
                  f"{p99:>7.3f} ms {wall:>6.1f}s {cpu:>7.1f} µs", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
