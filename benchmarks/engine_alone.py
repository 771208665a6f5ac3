"""The ICMP engine alone beside fping: what the echoes cost without judging or readers.

    sudo .venv/bin/python benchmarks/engine_alone.py                  # 12,000 targets
    sudo .venv/bin/python benchmarks/engine_alone.py --sites 2000 --rounds 1

One after the other (never at the same time: each has both cores), on the same loopback
targets, COUNT echoes each per INTERVAL, spread over 80 % of it:
- fping -C COUNT, as truth_under_load.py runs its reference; CPU from wait4;
- bridgemon's ``Pinger`` in this process, driven as the daemon's rounds drive it (sites
  started on the engine's tick grid with ``Pinger.start``), with no board, metrics or web
  server: CPU of this process over ROUNDS rounds after one warm-up round.
Both split into user and system time. truth_under_load.py measures the whole daemon; this
says how much of it is the engine. Traffic goes to 127.0.0.0/8 only; every run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.inventory import loopback_address
from bridgemon.probes.pinger import Pinger
from bridgemon.probes.result import EchoBurst


def run_fping(targets: list[str], count: int, interval: float) -> tuple[int, float, float]:
    """(echoes answered, user s, system s) of one fping -C run over TARGETS."""
    gap_ms = max(interval * 0.8 * 1000 / (len(targets) * count), 0.01)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(targets) + "\n")
        listing.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            ["fping", "-q", "-C", str(count), "-p", "200", "-i", f"{gap_ms:.3f}", "-t", "1000",
             "-f", listing.name], capture_output=True, text=True, timeout=interval * 3)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    answered = sum(1 for line in done.stderr.splitlines() if " : " in line
                   for value in line.split(" : ", 1)[1].split() if value != "-")
    return answered, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


async def run_engine(targets: list[str], count: int, interval: float,
                     rounds: int) -> tuple[int, float, float]:
    """(echoes answered, user s, system s) of ROUNDS rounds of the engine alone."""
    pinger = Pinger()
    loop = asyncio.get_running_loop()
    answered = 0

    async def one_round() -> int:
        got: list[int] = []
        finished = asyncio.Event()

        def done(burst: EchoBurst) -> None:
            got.append(burst.received)
            if len(got) == len(targets):
                finished.set()

        begun = loop.time()
        step = interval * 0.8 / len(targets)
        for index, target in enumerate(targets):
            due = begun + index * step
            if due > loop.time():
                await asyncio.sleep(math.ceil(due / pinger.tick) * pinger.tick - loop.time())
            pinger.start(target, done, count=count, spacing=0.2, timeout=1.0)
        await asyncio.wait_for(finished.wait(), interval)
        await asyncio.sleep(max(0.0, begun + interval - loop.time()))
        return sum(got)

    try:
        await one_round()  # warm-up: sockets, caches
        start = os.times()
        for _ in range(rounds):
            answered += await one_round()
        end = os.times()
    finally:
        pinger.close()
    return answered, end.user - start.user, end.system - start.system


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sites", type=int, default=12000)
    parser.add_argument("--count", type=int, default=5, help="echoes per target per round")
    parser.add_argument("--interval", type=float, default=30, help="round interval, seconds")
    parser.add_argument("--rounds", type=int, default=2, help="engine rounds measured")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("fping") is None:
        print("run as root, with fping installed (apt-get install fping)", file=sys.stderr)
        return 2
    if not 1 <= args.sites <= 200_000 or args.rounds < 1 or args.interval < 5:
        print("--sites 1..200000, --rounds >= 1, --interval >= 5", file=sys.stderr)
        return 2
    targets = [loopback_address(index) for index in range(args.sites)]
    print(f"fping: {args.sites} targets × {args.count} echoes over {args.interval * 0.8:g} s",
          flush=True)
    f_echoes, f_user, f_system = run_fping(targets, args.count, args.interval)
    print(f"engine: {args.rounds} rounds after a warm-up one", flush=True)
    e_echoes, e_user, e_system = asyncio.run(
        run_engine(targets, args.count, args.interval, args.rounds))
    expected_f, expected_e = args.sites * args.count, args.sites * args.count * args.rounds
    rows = []
    for name, echoes, expected, user, system in (
            ("fping", f_echoes, expected_f, f_user, f_system),
            ("engine", e_echoes, expected_e, e_user, e_system)):
        per = (user + system) / echoes * 1e6 if echoes else float("nan")
        rows.append(per)
        print(f"{name:7s} {echoes}/{expected} echoes answered; CPU per echo {per:.1f} µs "
              f"(user {user / max(echoes, 1) * 1e6:.1f}, system "
              f"{system / max(echoes, 1) * 1e6:.1f})")
    print(f"engine ÷ fping: {rows[1] / rows[0]:.2f}×")
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(total {time.monotonic() - started:.0f} s)")
    raise SystemExit(code)
